//! How Postgres errors are classified, against a real server: the codes
//! come from Postgres, not from a hand-made error.

use sqlx::Connection as _;
use testkit::TestPostgres;

#[tokio::test]
async fn text_postgres_cannot_store_is_recognised_as_the_clients_fault() {
    let server = TestPostgres::start().await;
    let mut db = sqlx::PgConnection::connect(server.url()).await.unwrap();

    let nul = sqlx::query_scalar::<_, String>("select $1::text")
        .bind("Night\0Shift")
        .fetch_one(&mut db)
        .await
        .unwrap_err();

    assert!(pgkit::is_unstorable_text(&nul), "{nul}");
    assert!(!pgkit::is_unavailable(&nul), "{nul}");
    let other = sqlx::query("select 1/0")
        .execute(&mut db)
        .await
        .unwrap_err();
    assert!(!pgkit::is_unstorable_text(&other), "{other}");
}

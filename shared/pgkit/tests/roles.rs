//! The Postgres roles compose gives the services ([docs/security.md]): each service
//! logs in as a role of its own that owns its database and nothing else,
//! cannot create databases or roles, and cannot even connect to another
//! service's database.
//!
//! The roles and databases are made by the very SQL compose runs at the
//! first start of its volume (`docker/postgres-init/service-role.psql`,
//! through `psql`, as `01-service-roles.sh` does), under names unique to
//! the test, on the test's Postgres (`testkit::TestPostgres`: the server of
//! `DATABASE_URL`, or a container without it; as a superuser, as compose's
//! init step is). `psql` must be on `PATH`. No server, no pass.
//!
//! [docs/security.md]: ../../../docs/security.md
//!
//! On a server with `trust` authentication (this machine's) the passwords
//! are not checked; what is checked holds whatever the authentication:
//! privileges are enforced after it.

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::str::FromStr as _;
use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::Connection as _;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use testkit::TestPostgres;

/// The file compose's init script runs once per service.
const SERVICE_ROLE_SQL: &str = include_str!("../../../docker/postgres-init/service-role.psql");

/// `insufficient_privilege`: what Postgres answers a role that lacks one.
const INSUFFICIENT_PRIVILEGE: &str = "42501";

/// A name no other test (or test run) uses: `<service>_<pid>_<n>_<nanos>`.
fn unique_name(service: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "test_{service}_{}_{}_{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A service's role and database, named alike, made by compose's SQL and
/// dropped (database first, then role) when the test ends, pass or fail.
struct ServiceDatabase {
    admin_url: String,
    name: String,
    password: String,
}

impl ServiceDatabase {
    /// On `server`: the server of `DATABASE_URL`, or a container when it
    /// is not set (testkit), reached as its superuser.
    fn create(server: &TestPostgres, service: &str) -> Self {
        let name = unique_name(service);
        // Built first: if psql fails halfway, Drop still removes what exists.
        let created = Self {
            admin_url: server.url().to_owned(),
            password: format!("pw-{name}"),
            name,
        };
        let mut psql = Command::new("psql")
            .arg(&created.admin_url)
            .args(["--no-psqlrc", "--quiet", "--file", "-"])
            .arg(format!("--set=role={}", created.name))
            .arg(format!("--set=database={}", created.name))
            .arg(format!("--set=password={}", created.password))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("these tests run compose's SQL with psql: {e}"));
        psql.stdin
            .take()
            .expect("psql's stdin")
            .write_all(SERVICE_ROLE_SQL.as_bytes())
            .expect("the SQL to psql");
        let output = psql.wait_with_output().expect("psql finishes");
        assert!(
            output.status.success(),
            "service-role.psql failed against DATABASE_URL={} (is Postgres running there, \
             and is that user a superuser?): {}",
            created.admin_url,
            String::from_utf8_lossy(&output.stderr)
        );
        created
    }

    /// Connects as this service's role to `database`.
    async fn connect_to(&self, database: &str) -> Result<PgConnection, sqlx::Error> {
        let options = PgConnectOptions::from_str(&self.admin_url)
            .expect("DATABASE_URL is a Postgres URL")
            .username(&self.name)
            .password(&self.password)
            .database(database);
        PgConnection::connect_with(&options).await
    }

    /// Connects as this service's role to its own database.
    async fn connect(&self) -> PgConnection {
        self.connect_to(&self.name)
            .await
            .unwrap_or_else(|e| panic!("{} cannot connect to its own database: {e}", self.name))
    }
}

impl Drop for ServiceDatabase {
    fn drop(&mut self) {
        let dropped = Command::new("psql")
            .arg(&self.admin_url)
            .args(["--no-psqlrc", "--quiet"])
            .arg("--command")
            .arg(format!(
                "drop database if exists \"{}\" with (force)",
                self.name
            ))
            .arg("--command")
            .arg(format!("drop role if exists \"{}\"", self.name))
            .stdout(Stdio::null())
            .status();
        if !dropped.is_ok_and(|s| s.success()) {
            eprintln!(
                "warning: could not drop test database and role {}",
                self.name
            );
        }
    }
}

fn is_insufficient_privilege(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.code().as_deref() == Some(INSUFFICIENT_PRIVILEGE))
}

#[tokio::test]
async fn a_service_role_cannot_connect_to_another_services_database() {
    let server = TestPostgres::start().await;
    let orders = ServiceDatabase::create(&server, "orders");
    let inventory = ServiceDatabase::create(&server, "inventory");

    // Its own database takes it: the refusal below is the rule at work,
    // not a wrong host or password.
    orders.connect().await;
    let refused = orders
        .connect_to(&inventory.name)
        .await
        .expect_err("orders connected to inventory's database");
    assert!(
        is_insufficient_privilege(&refused),
        "expected permission denied (42501), got: {refused}"
    );
    let refused = inventory
        .connect_to(&orders.name)
        .await
        .expect_err("inventory connected to orders' database");
    assert!(is_insufficient_privilege(&refused), "{refused}");
}

#[tokio::test]
async fn a_service_role_owns_its_database_and_nothing_else() {
    let server = TestPostgres::start().await;
    let inventory = ServiceDatabase::create(&server, "inventory");
    let mut db = inventory.connect().await;

    // What its migrations do: tables, sequences, rows, in schema public.
    sqlx::raw_sql(
        "create table seats (seat_id text primary key, status text not null);
         create sequence hold_fences as bigint;
         insert into seats values ('A-1', 'AVAILABLE');",
    )
    .execute(&mut db)
    .await
    .expect("inventory creates and fills a table in its own database");
    let status: String = sqlx::query_scalar("select status from seats where seat_id = 'A-1'")
        .fetch_one(&mut db)
        .await
        .expect("inventory reads its table");
    assert_eq!(status, "AVAILABLE");

    let owned: Vec<String> = sqlx::query_scalar(
        "select datname::text from pg_database
         where datdba = (select oid from pg_roles where rolname = current_user)",
    )
    .fetch_all(&mut db)
    .await
    .expect("the catalog answers");
    assert_eq!(owned, std::slice::from_ref(&inventory.name));
}

#[tokio::test]
async fn a_service_role_cannot_create_databases_or_roles() {
    let server = TestPostgres::start().await;
    let orders = ServiceDatabase::create(&server, "orders");
    let mut db = orders.connect().await;

    let attributes: (bool, bool, bool, bool) = sqlx::query_as(
        "select rolcanlogin, rolsuper, rolcreatedb, rolcreaterole
         from pg_roles where rolname = current_user",
    )
    .fetch_one(&mut db)
    .await
    .expect("the catalog answers");
    assert_eq!(
        attributes,
        (true, false, false, false),
        "login, superuser, createdb, createrole"
    );

    for (what, statement) in [
        (
            "a database",
            format!("create database \"{}_x\"", orders.name),
        ),
        ("a role", format!("create role \"{}_x\"", orders.name)),
    ] {
        let refused = sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
            .execute(&mut db)
            .await
            .expect_err(&format!("orders created {what}"));
        assert!(is_insufficient_privilege(&refused), "{what}: {refused}");
    }
}

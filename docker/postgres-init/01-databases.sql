-- One database per service, created when the Postgres volume is first
-- initialised (the official image runs /docker-entrypoint-initdb.d once).
-- Each service owns its schema and migrates it at start; the services can
-- also create their database themselves (pgkit::connect), which is what
-- happens against a Postgres that did not run this script.
create database orders;
create database inventory;
create database reporting;
create database notification;

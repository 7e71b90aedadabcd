//! keymigrate's integration tests: the real binary against real Cinder and Nova databases
//! (SQLite, MariaDB, PostgreSQL) and a real Keystone, Barbican and Glance, all started by
//! `scripts/test.sh`.

mod support;

mod ansible;
mod cli;
mod clouds;
mod crash;
mod dbstall;
mod docs;
mod errors;
mod faults;
mod features;
mod glance_stack;
mod nova;
mod nova_stack;
mod grants;
mod hostile;
mod images;
mod images_cinder;
pub mod migrate;
mod owners;
mod package;
mod projects;
mod rehome;
mod release;
mod scan;
mod scan_oracle;
mod tls;

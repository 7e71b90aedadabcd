//! The units of work: which rows on the all-zeros key are in scope, and what `migrate` does with
//! each. `scan` prints this plan; `migrate` walks the same plan and carries it out.
//!
//! A volume gets a new secret, shared by its all-zeros snapshots and its glance-metadata rows
//! (and those of its snapshots). A snapshot or glance-metadata row whose volume is not itself a
//! unit gets a secret of its own (a snapshot's glance rows share the snapshot's). Each backup gets
//! its own.
//! Under `--secret-owner project` sharing stops at a project's edge: a snapshot (or a
//! snapshot's glance row) in another project than its volume gets a secret of its own, in its own
//! project, and a row without a project is blocked; under `service` a row without a user is.
//!
//! `rules` says what happens to each row; `census` is the pipeline that applies the rules to a
//! whole database in one pass, `tally` what it counts, `parents` what it remembers of volumes
//! for their child rows.

mod census;
mod parents;
mod rules;
mod tally;

pub use census::{tally, walk, walk_with, Collect, Lookup};
pub use parents::Parent;
pub use rules::{keyed_page, page, Action, Item, Keyed, Skipped, Unit, NULL_HOST};
pub use tally::{Census, TableTally, Tally};

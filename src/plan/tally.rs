//! What a walk counts: the units in scope per table and action ([`Tally`]), and the whole
//! database's rows on the all-zeros key, live and deleted ([`Census`]).

use super::rules::{Action, Item};
use crate::cinder::Table;
use crate::db::TableCounts;

/// Whole-database counts of rows on the all-zeros key, seen by a [`walk`] on its way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Census {
    pub live: TableCounts,
    pub deleted: TableCounts,
}

impl Census {
    pub(super) fn merge(&mut self, other: &Census) {
        self.live.merge(&other.live);
        self.deleted.merge(&other.deleted);
    }

    /// Counts a row on the all-zeros key. NULL `deleted` counts as neither, as Cinder's
    /// `deleted = false` and `deleted = true` both leave it out.
    pub(super) fn count(&mut self, table: Table, deleted: Option<bool>) {
        match deleted {
            Some(false) => *self.live.get_mut(table) += 1,
            Some(true) => *self.deleted.get_mut(table) += 1,
            None => {}
        }
    }
}

/// Units counted per table and action: what `scan` and `status` report.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Tally {
    pub volumes: TableTally,
    pub snapshots: TableTally,
    pub backups: TableTally,
    pub volume_glance_metadata: TableTally,
    /// Rows on the all-zeros key reported but never touched (NULL host outside --all-hosts).
    pub skipped: i64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct TableTally {
    /// Units in scope.
    pub total: i64,
    /// Units that get a secret of their own.
    pub new_secret: i64,
    /// Units rewritten together with their volume or snapshot.
    pub shared: i64,
    /// Units that need an operator.
    pub blocked: i64,
}

impl Tally {
    pub(super) fn merge(&mut self, other: &Tally) {
        for table in Table::ALL {
            let (to, from) = (self.table_mut(table), other.table(table));
            to.total += from.total;
            to.new_secret += from.new_secret;
            to.shared += from.shared;
            to.blocked += from.blocked;
        }
        self.skipped += other.skipped;
    }

    pub fn add(&mut self, item: &Item) {
        match item {
            Item::Skipped(_) => self.skipped += 1,
            Item::Unit(u) => {
                let t = self.table_mut(u.table);
                t.total += 1;
                match u.action {
                    Action::NewSecret => t.new_secret += 1,
                    Action::ShareVolume(_) | Action::ShareSnapshot(_) => t.shared += 1,
                    Action::Blocked(_) => t.blocked += 1,
                }
            }
        }
    }

    pub fn table(&self, table: Table) -> &TableTally {
        match table {
            Table::Volumes => &self.volumes,
            Table::Snapshots => &self.snapshots,
            Table::Backups => &self.backups,
            Table::VolumeGlanceMetadata => &self.volume_glance_metadata,
        }
    }

    fn table_mut(&mut self, table: Table) -> &mut TableTally {
        match table {
            Table::Volumes => &mut self.volumes,
            Table::Snapshots => &mut self.snapshots,
            Table::Backups => &mut self.backups,
            Table::VolumeGlanceMetadata => &mut self.volume_glance_metadata,
        }
    }

    /// Units and skipped rows: every item counted.
    pub fn items(&self) -> u64 {
        u64::try_from(self.units() + self.skipped).unwrap_or(0)
    }

    pub fn units(&self) -> i64 {
        Table::ALL.iter().map(|t| self.table(*t).total).sum()
    }

    pub fn blocked(&self) -> i64 {
        Table::ALL.iter().map(|t| self.table(*t).blocked).sum()
    }

    pub fn new_secrets(&self) -> i64 {
        Table::ALL.iter().map(|t| self.table(*t).new_secret).sum()
    }
}

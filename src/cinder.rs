//! Cinder's own vocabulary, at the bottom of keymigrate: its tables, the ConfKeyManager's key ID,
//! the glance-metadata key that carries a volume's key ID, and who counts as a row's owner.
//! Imports nothing from the rest of keymigrate; everything else may import it.

/// The ConfKeyManager's key ID: every volume encrypted under it carries this value.
pub const ZERO_KEY_ID: &str = "00000000-0000-0000-0000-000000000000";

/// The `volume_glance_metadata` key Cinder copies from an image uploaded from an encrypted volume.
pub const GLANCE_KEY: &str = "cinder_encryption_key_id";

/// The Cinder tables whose rows can hold the all-zeros key ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Table {
    Volumes,
    Snapshots,
    Backups,
    VolumeGlanceMetadata,
}

impl Table {
    pub const ALL: [Table; 4] = [Table::Volumes, Table::Snapshots, Table::VolumeGlanceMetadata, Table::Backups];

    /// Cinder's table name.
    pub fn name(self) -> &'static str {
        match self {
            Table::Volumes => "volumes",
            Table::Snapshots => "snapshots",
            Table::Backups => "backups",
            Table::VolumeGlanceMetadata => "volume_glance_metadata",
        }
    }

    /// The word used in log lines ("Migrating volume <id> ...").
    pub fn noun(self) -> &'static str {
        match self {
            Table::Volumes => "volume",
            Table::Snapshots => "snapshot",
            Table::Backups => "backup",
            Table::VolumeGlanceMetadata => "glance-metadata",
        }
    }
}

/// Whether a `user_id` names someone a secret can be shared with: not empty, not just spaces
/// (an ACL for "  " would leave the secret readable by no user).
pub fn is_owner(user_id: &str) -> bool {
    !user_id.trim().is_empty()
}

/// Whose project a migrated key's secret belongs to (`--secret-owner`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum SecretOwner {
    /// The row's own project, as Cinder creates keys under Barbican: every member of the
    /// project reads it, by Barbican's own policy.
    #[default]
    Project,
    /// Cinder's service project, with a read ACL for the row's `user_id` (Cinder's own
    /// migrator): only that user (and Cinder) reads it.
    Service,
}

impl SecretOwner {
    pub fn name(self) -> &'static str {
        match self {
            SecretOwner::Project => "project",
            SecretOwner::Service => "service",
        }
    }
}

impl std::fmt::Display for SecretOwner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

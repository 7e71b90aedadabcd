//! Whether migrating makes sense, decided exactly as Cinder's key migrator decides it
//! (`cinder/keymgr/migration.py::handle_key_migration`), and the fixed key's bytes.

use zeroize::Zeroizing;

use crate::conf::{self, Conf};
use crate::error::{Error, Result};

/// Barbican rejects secrets above this size (`max_allowed_secret_in_bytes` answers 413 beyond it).
pub const MAX_KEY_BYTES: usize = 15_000;

/// `unhex([key_manager] fixed_key)`: the exact bytes every migrated secret must hold.
/// Never printed; wiped when dropped. The option's hex text is a [`crate::secret::Sensitive`]
/// in the configuration, wiped with it.
pub struct FixedKey(Zeroizing<Vec<u8>>);

impl FixedKey {
    /// Decodes the option's value. Errors name the option and never echo its value.
    pub fn from_hex(hex_text: &str) -> Result<FixedKey> {
        let bad = |message: &str| Error::config_value("[key_manager] fixed_key", message);
        if hex_text.is_empty() {
            return Err(bad("is empty"));
        }
        if !hex_text.len().is_multiple_of(2) {
            return Err(bad("must be an even number of hexadecimal digits"));
        }
        if !hex_text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad("must contain only hexadecimal digits (0-9, a-f)"));
        }
        if hex_text.len() / 2 > MAX_KEY_BYTES {
            return Err(bad("is longer than the 15000 bytes Barbican accepts for a secret"));
        }
        // Decoded straight into the zeroizing buffer, sized once: no other copy of the bytes.
        let mut bytes = Zeroizing::new(vec![0u8; hex_text.len() / 2]);
        hex::decode_to_slice(hex_text, bytes.as_mut_slice()).map_err(|_| bad("is not valid hexadecimal"))?;
        Ok(FixedKey(bytes))
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// `8 × length`, the `bit_length` Barbican records.
    pub fn bit_length(&self) -> usize {
        self.0.len() * 8
    }
}

impl std::fmt::Debug for FixedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FixedKey(<redacted>, {} bits)", self.bit_length())
    }
}

/// What the configuration says about migrating, in Cinder's order of checks.
#[derive(Debug)]
pub enum Conditions {
    /// The backend is Barbican and fixed_key is set: migrating can proceed.
    Ready { backend: String, key: FixedKey },
    /// `[key_manager] backend` still names the ConfKeyManager.
    ConfKeyManagerInUse { backend: String },
    /// `fixed_key` is unset or empty: the all-zeros key can no longer be served.
    NoFixedKey { backend: String },
    /// A backend other than Barbican (e.g. vault).
    Unsupported { backend: String },
}

impl Conditions {
    pub fn from_conf(conf: &Conf) -> Result<Conditions> {
        let backend = conf
            .get(&conf::KEY_MANAGER_BACKEND)?
            .map(|v| v.value.expose().to_string())
            .unwrap_or_default();
        let short = backend.rsplit('.').next().unwrap_or_default().to_string();
        if short == "ConfKeyManager" {
            return Ok(Conditions::ConfKeyManagerInUse { backend });
        }
        let fixed_key = conf.get(&conf::FIXED_KEY)?;
        let Some(fixed_key) = fixed_key.filter(|v| !v.value.is_empty()) else {
            return Ok(Conditions::NoFixedKey { backend });
        };
        if short != "barbican" && short != "BarbicanKeyManager" {
            return Ok(Conditions::Unsupported { backend });
        }
        let key = FixedKey::from_hex(fixed_key.value.expose()).map_err(|e| match e {
            Error::ConfigValue { option, message } => {
                Error::ConfigValue { option, message: format!("{message} ({})", fixed_key.origin) }
            }
            other => other,
        })?;
        Ok(Conditions::Ready { backend, key })
    }

    pub fn is_ready(&self) -> bool {
        matches!(self, Conditions::Ready { .. })
    }

    pub fn backend(&self) -> &str {
        match self {
            Conditions::Ready { backend, .. }
            | Conditions::ConfKeyManagerInUse { backend }
            | Conditions::NoFixedKey { backend }
            | Conditions::Unsupported { backend } => backend,
        }
    }

    /// A short machine-readable name.
    pub fn code(&self) -> &'static str {
        match self {
            Conditions::Ready { .. } => "ready",
            Conditions::ConfKeyManagerInUse { .. } => "conf_key_manager_in_use",
            Conditions::NoFixedKey { .. } => "no_fixed_key",
            Conditions::Unsupported { .. } => "unsupported_backend",
        }
    }

    /// Cinder's own log sentence for this condition, so logs grep the same.
    pub fn message(&self) -> String {
        match self {
            Conditions::Ready { backend, .. } => {
                format!("fixed_key is set and the key_manager backend is '{backend}': keys can be migrated to Barbican.")
            }
            Conditions::ConfKeyManagerInUse { .. } => {
                "Not migrating encryption keys because the ConfKeyManager is still in use.".to_string()
            }
            Conditions::NoFixedKey { .. } => {
                "Not migrating encryption keys because the ConfKeyManager's fixed_key is not in use.".to_string()
            }
            Conditions::Unsupported { backend } => format!(
                "Not migrating encryption keys because migration to the '{backend}' key_manager backend is not supported."
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(text: &str) -> Result<Conditions> {
        Conditions::from_conf(&Conf::from_text("c.conf", text)?)
    }

    #[test]
    fn follows_cinders_order_of_checks() {
        let c = cond("[key_manager]\nbackend = some.ConfKeyManager\nfixed_key = zz\n").expect("ok");
        assert_eq!(c.code(), "conf_key_manager_in_use");
        assert_eq!(cond("[key_manager]\nbackend = barbican\n").expect("ok").code(), "no_fixed_key");
        assert_eq!(cond("[key_manager]\nfixed_key =\n").expect("ok").code(), "no_fixed_key");
        assert_eq!(cond("[key_manager]\nbackend = vault\nfixed_key = 00\n").expect("ok").code(), "unsupported_backend");
        assert_eq!(cond("[key_manager]\nbackend = some.confkeymanager\nfixed_key = 00\n").expect("ok").code(), "unsupported_backend");
        for backend in ["barbican", "castellan.key_manager.barbican_key_manager.BarbicanKeyManager", "cinder.keymgr.barbican.BarbicanKeyManager"] {
            let c = cond(&format!("[key_manager]\nbackend = {backend}\nfixed_key = 0a0B\n")).expect("ok");
            let Conditions::Ready { key, .. } = c else { panic!("{backend} should be ready") };
            assert_eq!(key.bytes(), &[0x0a, 0x0b]);
            assert_eq!(key.bit_length(), 16);
        }
        assert!(cond("[keymgr]\nfixed_key = 00\n").expect("ok").is_ready(), "unset backend means barbican");
        let c = cond("[key_manager]\nbackend =\nfixed_key = 00\n").expect("ok");
        assert_eq!(c.code(), "unsupported_backend", "an explicitly empty backend is not barbican");
    }

    #[test]
    fn bad_fixed_key_names_the_option_and_hides_the_value() {
        for bad in ["abc", "zz11", "0a 0b", "secretvaluexx"] {
            let err = cond(&format!("[key_manager]\nfixed_key = {bad}\n")).expect_err(bad).to_string();
            assert!(err.starts_with("[key_manager] fixed_key"), "{err}");
            assert!(!err.contains(bad), "{err}");
            assert!(err.contains("c.conf line 2"), "{err}");
        }
        let long = "00".repeat(MAX_KEY_BYTES + 1);
        assert!(cond(&format!("[key_manager]\nfixed_key = {long}\n")).is_err());
    }

    #[test]
    fn debug_never_shows_the_key() {
        let k = FixedKey::from_hex("deadbeef").expect("hex");
        let s = format!("{k:?}");
        assert!(!s.to_lowercase().contains("deadbeef") && !s.contains("222"), "{s}");
    }
}

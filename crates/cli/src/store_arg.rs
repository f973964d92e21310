//! Resolving the `--store` argument once for every command, keeping the
//! URL as given (workers need it, password included) beside its parsed,
//! printable form.

use unibench_store::{url, StoreError, StoreUrl};

/// The store a command uses.
pub struct StoreChoice {
    /// The URL as given, handed to workers; may hold a password.
    pub raw: String,
    pub url: StoreUrl,
}

impl std::fmt::Debug for StoreChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StoreChoice({})", self.url)
    }
}

/// Resolves the store: the given URL, else `UNIBENCH_STORE`, else the
/// embedded default file.
pub fn resolve(explicit: Option<&str>) -> Result<StoreChoice, StoreError> {
    let given = explicit
        .map(str::to_owned)
        .or_else(|| std::env::var(url::STORE_ENV).ok())
        .filter(|text| !text.trim().is_empty());
    match given {
        Some(raw) => {
            let raw = raw.trim().to_owned();
            let url = raw.parse()?;
            Ok(StoreChoice { raw, url })
        }
        None => {
            let path = url::default_sqlite_path()?;
            let raw = format!("sqlite://{}", path.display());
            Ok(StoreChoice { url: raw.parse()?, raw })
        }
    }
}

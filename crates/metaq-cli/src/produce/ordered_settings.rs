//! `--ordered`'s settings and the ordered producer's configuration made
//! from them: checked before anything is contacted (`checks`), used when
//! sending (`ordered`).

use std::path::PathBuf;
use std::time::Duration;

use metaq::local_store::LocalStoreConfig;
use metaq::producer::OrderedConfig;

/// What `--ordered` needs besides the records.
pub(super) struct Settings {
    pub(super) store_dir: PathBuf,
    /// `--layout`, already checked.
    pub(super) layout: Option<String>,
    /// `--flush-ms`.
    pub(super) flush: Duration,
    /// `--key-delimiter` as typed, for the error of a record without a key.
    pub(super) key_delimiter: Option<String>,
}

/// The ordered producer's settings for `topic` (also used to check
/// `--layout` before anything is contacted).
pub(super) fn config(settings: &Settings, topic: &str) -> Result<OrderedConfig, String> {
    let config = OrderedConfig::new(&settings.store_dir)
        .store(LocalStoreConfig::default())
        .replay_interval(Duration::from_secs(1));
    match &settings.layout {
        Some(layout) => config
            .layout(topic, layout)
            .map_err(|e| format!("--layout: {e}")),
        None => Ok(config),
    }
}

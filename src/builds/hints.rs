//! Daemon errors whose cause is a setting of dockpub's: the message gets the fix
//! appended, so that a first build on such a machine does not end in a riddle.

/// Errors of a daemon without its default `bridge` network (no `docker0`), which
/// every `RUN` step uses unless the build names another.
const NO_DEFAULT_BRIDGE: [&str; 2] = ["could not find bridge docker0", "network bridge not found"];

pub fn with_hint(error: String) -> String {
    if NO_DEFAULT_BRIDGE
        .iter()
        .any(|symptom| error.contains(symptom))
    {
        return format!(
            "{error} (this daemon has no default bridge network: set build_network = \"none\" \
             or \"host\" in config.toml, DOCKPUB_BUILD_NETWORK or --build-network)"
        );
    }
    error
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_bridge_names_build_network() {
        let hinted = with_hint("failed to create endpoint on network bridge: could not find bridge docker0: route ip+net: no such network interface".into());
        assert!(hinted.contains("build_network = \"none\""), "{hinted}");
        assert_eq!(with_hint("exit code: 1".into()), "exit code: 1");
    }
}

//! Why a queued build has not started, and whether it ever could: read off the
//! builders' health and load, so that no build waits in silence.

use crate::docker::BuilderStatus;

/// A platform that no builder offers, or could offer, with what the pool
/// offers; None when some builder could run it (or has not said yet which
/// platforms it has, having never been up).
pub fn unschedulable_platform(builders: &[BuilderStatus], platform: &str) -> Option<String> {
    if builders.iter().any(|b| b.platforms.is_empty()) {
        return None;
    }
    if builders
        .iter()
        .any(|b| b.platforms.iter().any(|p| p == platform))
    {
        return None;
    }
    let mut offered: Vec<&str> = builders
        .iter()
        .flat_map(|b| b.platforms.iter().map(String::as_str))
        .collect();
    offered.sort_unstable();
    offered.dedup();
    Some(format!(
        "no builder offers platform '{platform}'; the pool offers {}",
        offered.join(", ")
    ))
}

/// What a queued build waits for, in words; None when a slot for it is free
/// (the dispatcher is about to start it).
pub fn waiting_for(builders: &[BuilderStatus], platform: Option<&str>) -> Option<String> {
    let able: Vec<&BuilderStatus> = builders
        .iter()
        .filter(|b| {
            platform.is_none_or(|p| b.platforms.is_empty() || b.platforms.iter().any(|o| o == p))
        })
        .collect();
    let named = |what: &str| match platform {
        Some(platform) => format!("platform {platform}: {what}"),
        None => what.to_string(),
    };
    if able.is_empty() {
        return Some(named("no builder offers it"));
    }
    let up: Vec<&&BuilderStatus> = able.iter().filter(|b| b.up).collect();
    if up.is_empty() {
        return Some(match platform {
            Some(_) => named("its builders are down"),
            None => "no builder up".to_string(),
        });
    }
    if up.iter().all(|b| b.running >= b.slots) {
        let slots: usize = up.iter().map(|b| b.slots).sum();
        return Some(named(&format!("every slot is busy ({slots} running)")));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builder(name: &str, up: bool, running: usize, platforms: &[&str]) -> BuilderStatus {
        BuilderStatus {
            name: name.into(),
            host: "unix:///x".into(),
            tls: false,
            up,
            running,
            slots: 1,
            platforms: platforms.iter().map(|p| p.to_string()).collect(),
            last_error: None,
            builds_done: 0,
        }
    }

    #[test]
    fn a_platform_nobody_offers_is_named_with_what_is_offered() {
        let pool = [
            builder("a", true, 0, &["linux/amd64"]),
            builder("b", false, 0, &["linux/amd64", "linux/386"]),
        ];
        let refused = unschedulable_platform(&pool, "linux/arm64").unwrap();
        assert!(refused.contains("linux/386, linux/amd64"), "{refused}");
        assert_eq!(unschedulable_platform(&pool, "linux/386"), None);
        // A builder that never said what it has might have it.
        let unknown = [builder("a", false, 0, &[])];
        assert_eq!(unschedulable_platform(&unknown, "linux/arm64"), None);
    }

    #[test]
    fn says_why_a_build_waits() {
        let down = [builder("a", false, 0, &["linux/amd64"])];
        assert_eq!(waiting_for(&down, None).as_deref(), Some("no builder up"));
        assert_eq!(
            waiting_for(&down, Some("linux/amd64")).as_deref(),
            Some("platform linux/amd64: its builders are down")
        );
        let busy = [builder("a", true, 1, &["linux/amd64"])];
        assert_eq!(
            waiting_for(&busy, None).as_deref(),
            Some("every slot is busy (1 running)")
        );
        let free = [builder("a", true, 0, &["linux/amd64"])];
        assert_eq!(waiting_for(&free, None), None);
        assert_eq!(
            waiting_for(&free, Some("linux/arm64")).as_deref(),
            Some("platform linux/arm64: no builder offers it")
        );
    }
}

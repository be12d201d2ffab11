//! A build of several platforms, as the CLI shows each platform's progress:
//! `follow` prints a line whenever a platform's phase changes, and `status`
//! adds where each platform is to the build's line.

use serde_json::Value;

/// The platforms of a `progress` object, each as `(platform, phase line)`:
/// `linux/arm64: building on local`.
pub fn phase_lines(progress: &Value) -> Vec<(String, String)> {
    entries(progress)
        .map(|platform| {
            let name = platform["platform"].as_str().unwrap_or("?").to_string();
            let line = format!("{name}: {}", phase_and_builder(platform));
            (name, line)
        })
        .collect()
}

/// `  linux/amd64 building on local, step 2 of 3; linux/arm64 waiting for a slot`,
/// or nothing for a build of one platform.
pub fn status_suffix(progress: &Value) -> String {
    let parts: Vec<String> = entries(progress)
        .map(|platform| {
            format!(
                "{} {}{}",
                platform["platform"].as_str().unwrap_or("?"),
                phase_and_builder(platform),
                counts(platform)
            )
        })
        .collect();
    if parts.is_empty() {
        return String::new();
    }
    format!("  {}", parts.join("; "))
}

fn entries(progress: &Value) -> impl Iterator<Item = &Value> {
    progress["platforms"].as_array().into_iter().flatten()
}

fn phase_and_builder(platform: &Value) -> String {
    let phase = match platform["phase"].as_str() {
        Some("waiting_for_slot") => "waiting for a slot",
        Some(phase) => phase,
        None => "?",
    };
    match platform["builder"].as_str() {
        Some(builder) if phase != "waiting for a slot" => format!("{phase} on {builder}"),
        _ => phase.to_string(),
    }
}

/// `, step 2 of 3, 1 of 4 layers pushed`: what the platform counted so far.
fn counts(platform: &Value) -> String {
    let mut text = String::new();
    if let (Some(step), Some(steps)) = (platform["step"].as_u64(), platform["steps"].as_u64()) {
        text.push_str(&format!(", step {step} of {steps}"));
    }
    let layers = (
        platform["layers_done"].as_u64(),
        platform["layers_total"].as_u64(),
    );
    if let (Some(done), Some(total)) = layers {
        text.push_str(&format!(", {done} of {total} layers pushed"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn progress() -> Value {
        json!({
            "step": 3, "steps": 5,
            "platforms": [
                {"platform": "linux/amd64", "phase": "pushing", "builder": "local",
                 "step": 2, "steps": 2, "layers_done": 1, "layers_total": 3},
                {"platform": "linux/arm64", "phase": "waiting_for_slot", "builder": null,
                 "step": null, "steps": null, "layers_done": null, "layers_total": null}
            ]
        })
    }

    #[test]
    fn each_platform_says_its_phase_builder_and_counts() {
        assert_eq!(
            status_suffix(&progress()),
            "  linux/amd64 pushing on local, step 2 of 2, 1 of 3 layers pushed; \
             linux/arm64 waiting for a slot"
        );
        let lines: Vec<String> = phase_lines(&progress()).into_iter().map(|l| l.1).collect();
        assert_eq!(
            lines,
            [
                "linux/amd64: pushing on local",
                "linux/arm64: waiting for a slot"
            ]
        );
    }

    #[test]
    fn a_build_of_one_platform_adds_nothing() {
        let one = json!({"step": 1, "steps": 2, "platforms": []});
        assert_eq!(status_suffix(&one), "");
        assert!(phase_lines(&one).is_empty());
        assert_eq!(status_suffix(&Value::Null), "");
    }
}

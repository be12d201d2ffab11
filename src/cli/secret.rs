//! `--secret` as the docker CLI spells it: `id=ID,src=FILE` or `id=ID,env=VAR`
//! (`source=` for `src=`). The value is sent as a file part named by its id.

use reqwest::multipart::Part;

use super::CliError;

pub fn secret_part(spec: &str) -> Result<Part, CliError> {
    let fail = |reason: &str| CliError::Secret {
        spec: spec.to_string(),
        reason: reason.to_string(),
    };
    let (mut id, mut file, mut env) = (None, None, None);
    for pair in spec.split(',') {
        match pair.split_once('=') {
            Some(("id", value)) => id = Some(value),
            Some(("src" | "source", value)) => file = Some(value),
            Some(("env", value)) => env = Some(value),
            Some(("type", "file" | "env")) => {}
            _ => return Err(fail("expected id=ID,src=FILE or id=ID,env=VAR")),
        }
    }
    let id = id
        .filter(|id| !id.is_empty())
        .ok_or_else(|| fail("id=ID is missing"))?;
    let value = match (file, env) {
        (Some(path), None) => {
            std::fs::read(path).map_err(|err| fail(&format!("cannot read {path}: {err}")))?
        }
        (None, Some(name)) => std::env::var(name)
            .map_err(|_| fail(&format!("the variable {name} is not set")))?
            .into_bytes(),
        _ => return Err(fail("give either src=FILE or env=VAR")),
    };
    Ok(Part::bytes(value).file_name(id.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_docker_cli_secret_specs() {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), "v").unwrap();
        let spec = format!("id=token,src={}", file.path().display());
        assert!(secret_part(&spec).is_ok());
        for bad in ["src=/x", "id=a", "id=a,src=/no/such/file", "id=a,bogus=1"] {
            assert!(secret_part(bad).is_err(), "{bad}");
        }
    }
}

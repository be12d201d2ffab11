use std::io::Write;

use tempfile::{NamedTempFile, TempDir};

use super::*;

/// One archive entry: a name as raw bytes, so unsafe names can be written too.
enum Item<'a> {
    File(&'a str, &'a [u8]),
    Raw(&'a [u8], EntryType, Option<&'a str>),
}

fn tar_bytes(items: &[Item<'_>]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for item in items {
        let mut header = tar::Header::new_gnu();
        header.set_mode(0o644);
        match item {
            Item::File(name, content) => {
                header.set_size(content.len() as u64);
                builder.append_data(&mut header, name, *content).unwrap();
            }
            Item::Raw(name, kind, target) => {
                header.set_entry_type(*kind);
                header.set_size(0);
                header.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name);
                if let Some(target) = target {
                    header.set_link_name(target).unwrap();
                }
                header.set_cksum();
                builder.append(&header, std::io::empty()).unwrap();
            }
        }
    }
    builder.into_inner().unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn upload(dir: &TempDir, bytes: &[u8]) -> ContextUpload {
    let mut file = NamedTempFile::new_in(dir.path()).unwrap();
    file.write_all(bytes).unwrap();
    ContextUpload {
        file: file.into_temp_path(),
    }
}

const ROOMY: ContextLimits = ContextLimits {
    max_bytes: 1 << 30,
    max_entries: 1000,
};

fn in_context(dir: &TempDir, bytes: &[u8]) -> Result<Prepared, ContextError> {
    in_context_within(dir, bytes, ROOMY)
}

fn in_context_within(
    dir: &TempDir,
    bytes: &[u8],
    limits: ContextLimits,
) -> Result<Prepared, ContextError> {
    prepare(
        upload(dir, bytes),
        DockerfileSource::InContext("Dockerfile".into()),
        1024,
        limits,
        Builder::Buildkit,
    )
}

fn names(path: &Path) -> Vec<String> {
    let (mut archive, _) = open(path, u64::MAX).unwrap();
    archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect()
}

fn content(path: &Path, wanted: &str) -> String {
    let (mut archive, _) = open(path, u64::MAX).unwrap();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap().to_str() == Some(wanted) {
            let mut text = String::new();
            entry.read_to_string(&mut text).unwrap();
            return text;
        }
    }
    panic!("{wanted} is not in the archive");
}

const DOCKERFILE: &[u8] = b"FROM scratch\nCOPY . /\n";

#[test]
fn plain_and_gzip_archives_are_kept_as_they_are() {
    let dir = TempDir::new().unwrap();
    let plain = tar_bytes(&[
        Item::File("./Dockerfile", DOCKERFILE),
        Item::File("a.txt", b"a"),
    ]);
    for bytes in [plain.clone(), gzip(&plain)] {
        let prepared = in_context(&dir, &bytes).unwrap();
        assert_eq!(prepared.dockerfile_in_context.as_deref(), Some(DOCKERFILE));
        assert_eq!(prepared.context.dockerfile_path, "Dockerfile");
        assert_eq!(std::fs::read(&prepared.context.archive).unwrap(), bytes);
    }
}

#[test]
fn unsafe_entries_are_named() {
    let dir = TempDir::new().unwrap();
    let cases: [(&[u8], EntryType, Option<&str>); 6] = [
        (b"../evil", EntryType::Regular, None),
        (b"/etc/evil", EntryType::Regular, None),
        (b"dev/null", EntryType::Char, None),
        (b"dev/sda", EntryType::Block, None),
        (b"link", EntryType::Symlink, Some("../../etc/passwd")),
        (b"abs", EntryType::Symlink, Some("/etc/passwd")),
    ];
    for (name, kind, target) in cases {
        let bytes = tar_bytes(&[
            Item::File("Dockerfile", DOCKERFILE),
            Item::Raw(name, kind, target),
        ]);
        let err = in_context(&dir, &bytes).err().expect("refused");
        let shown = err.to_string();
        assert!(matches!(err, ContextError::UnsafeEntry { .. }), "{shown}");
        assert!(
            shown.contains(std::str::from_utf8(name).unwrap()),
            "{shown}"
        );
    }
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "temp files left"
    );
}

#[test]
fn what_is_not_an_archive_is_refused() {
    let dir = TempDir::new().unwrap();
    let err = in_context(&dir, b"hello, this is not a tar archive")
        .err()
        .unwrap();
    assert!(matches!(err, ContextError::NotAnArchive(_)), "{err}");
    let err = in_context(&dir, &gzip(b"not a tar either")).err().unwrap();
    assert!(matches!(err, ContextError::NotAnArchive(_)), "{err}");
}

#[test]
fn a_missing_dockerfile_is_named() {
    let dir = TempDir::new().unwrap();
    let err = in_context(&dir, &tar_bytes(&[Item::File("a.txt", b"a")]))
        .err()
        .unwrap();
    assert!(matches!(err, ContextError::NoDockerfile(ref p) if p == "Dockerfile"));
}

#[test]
fn dockerignore_leaves_entries_out_but_keeps_the_dockerfile() {
    let dir = TempDir::new().unwrap();
    let bytes = tar_bytes(&[
        Item::File(".dockerignore", b"secret*\nDockerfile\n"),
        Item::File("Dockerfile", DOCKERFILE),
        Item::File("secret.txt", b"s"),
        Item::File("keep.txt", b"k"),
    ]);
    let prepared = in_context(&dir, &bytes).unwrap();
    assert_eq!(
        names(&prepared.context.archive),
        vec![".dockerignore", "Dockerfile", "keep.txt"]
    );
}

#[test]
fn an_uploaded_dockerfile_is_added_and_ignored_after_reading() {
    let dir = TempDir::new().unwrap();
    let bytes = tar_bytes(&[
        Item::File("Dockerfile", b"FROM other\n"),
        Item::File(".dockpub-Dockerfile", b"taken"),
    ]);
    let prepared = prepare(
        upload(&dir, &bytes),
        DockerfileSource::Uploaded("FROM scratch\n".into()),
        1024,
        ROOMY,
        Builder::Buildkit,
    )
    .unwrap();
    let archive = &prepared.context.archive;
    assert_eq!(prepared.context.dockerfile_path, ".dockpub-Dockerfile-2");
    assert_eq!(content(archive, ".dockpub-Dockerfile-2"), "FROM scratch\n");
    assert_eq!(content(archive, "Dockerfile"), "FROM other\n");
    assert_eq!(
        content(archive, ".dockerignore"),
        ".dockerignore\n.dockpub-Dockerfile-2\n"
    );
}

#[test]
fn a_gzip_bomb_is_refused_by_its_decompressed_size() {
    let dir = TempDir::new().unwrap();
    let zeros = vec![0u8; 8 * 1024 * 1024];
    let bomb = gzip(&tar_bytes(&[
        Item::File("Dockerfile", DOCKERFILE),
        Item::File("zeros", &zeros),
    ]));
    assert!(bomb.len() < 64 * 1024, "the test's gzip should be small");
    let limits = ContextLimits {
        max_bytes: 1024 * 1024,
        ..ROOMY
    };
    let refused = in_context_within(&dir, &bomb, limits).err().unwrap();
    assert!(
        matches!(refused, ContextError::TooLarge { limit } if limit == 1024 * 1024),
        "{refused}"
    );
    // The refused upload is gone with its TempPath; nothing else was written.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn a_context_within_its_decompressed_limit_is_taken() {
    let dir = TempDir::new().unwrap();
    let bytes = tar_bytes(&[Item::File("Dockerfile", DOCKERFILE)]);
    let limits = ContextLimits {
        max_bytes: bytes.len() as u64,
        ..ROOMY
    };
    assert!(in_context_within(&dir, &gzip(&bytes), limits).is_ok());
}

#[test]
fn too_many_entries_are_refused() {
    let dir = TempDir::new().unwrap();
    let names: Vec<String> = (0..11).map(|n| format!("f{n}")).collect();
    let mut items = vec![Item::File("Dockerfile", DOCKERFILE)];
    items.extend(names.iter().map(|name| Item::File(name, b"x")));
    let limits = ContextLimits {
        max_entries: 10,
        ..ROOMY
    };
    let refused = in_context_within(&dir, &tar_bytes(&items), limits)
        .err()
        .unwrap();
    assert!(
        matches!(refused, ContextError::TooManyEntries { limit: 10 }),
        "{refused}"
    );
}

#[test]
fn a_huge_long_name_record_is_refused_before_it_is_read() {
    let dir = TempDir::new().unwrap();
    let mut builder = tar::Builder::new(Vec::new());
    let mut long_name = tar::Header::new_gnu();
    long_name.set_entry_type(EntryType::GNULongName);
    long_name.set_size(8 * 1024 * 1024);
    long_name.set_cksum();
    builder
        .append(&long_name, std::io::repeat(b'a').take(8 * 1024 * 1024))
        .unwrap();
    let mut file = tar::Header::new_gnu();
    file.set_size(DOCKERFILE.len() as u64);
    file.set_cksum();
    builder.append(&file, DOCKERFILE).unwrap();
    let bomb = gzip(&builder.into_inner().unwrap());
    assert!(bomb.len() < 64 * 1024);
    let refused = in_context(&dir, &bomb).err().unwrap();
    assert!(
        matches!(refused, ContextError::OversizedHeaderRecord),
        "{refused}"
    );
}

/// One PAX record, `LEN key=value\n`, its length counting itself.
fn pax_record(key: &str, value: &str) -> Vec<u8> {
    let body = format!(" {key}={value}\n");
    let mut len = body.len() + 1;
    while format!("{len}{body}").len() != len {
        len += 1;
    }
    format!("{len}{body}").into_bytes()
}

/// A ustar archive in which every file comes after a PAX header naming it, as
/// `tar --format=pax` and Python's tarfile write them.
fn pax_tar(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, content) in files {
        let record = pax_record("path", name);
        let mut pax = tar::Header::new_ustar();
        pax.set_entry_type(EntryType::XHeader);
        pax.set_path("PaxHeaders/x").unwrap();
        pax.set_size(record.len() as u64);
        pax.set_cksum();
        builder.append(&pax, &record[..]).unwrap();
        let mut header = tar::Header::new_ustar();
        header.set_path("placeholder").unwrap();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append(&header, *content).unwrap();
    }
    builder.into_inner().unwrap()
}

/// The first raw entry's kind and data size: what BuildKit sniffs.
fn first_raw(path: &Path) -> (EntryType, u64) {
    let (mut archive, _) = open(path, u64::MAX).unwrap();
    let mut entries = archive.entries().unwrap().raw(true);
    let first = entries.next().unwrap().unwrap();
    (
        first.header().entry_type(),
        first.header().entry_size().unwrap(),
    )
}

#[test]
fn an_uncompressed_pax_archive_is_written_out_plain_and_a_gzipped_one_is_kept() {
    let dir = TempDir::new().unwrap();
    let long = format!("deep/{}/file.txt", "d".repeat(150));
    let bytes = pax_tar(&[
        ("Dockerfile", DOCKERFILE),
        ("a.txt", b"a"),
        (&long, b"long"),
    ]);
    let prepared = in_context(&dir, &bytes).unwrap();
    let archive = &prepared.context.archive;
    assert_ne!(std::fs::read(archive).unwrap(), bytes, "rewritten");
    assert_eq!(first_raw(archive).0, EntryType::Regular);
    assert_eq!(names(archive), vec!["Dockerfile", "a.txt", long.as_str()]);
    assert_eq!(content(archive, &long), "long");
    assert_eq!(prepared.dockerfile_in_context.as_deref(), Some(DOCKERFILE));

    let gzipped = gzip(&bytes);
    let prepared = in_context(&dir, &gzipped).unwrap();
    assert_eq!(std::fs::read(&prepared.context.archive).unwrap(), gzipped);
}

#[test]
fn a_first_entry_that_needs_a_long_name_record_is_led_by_a_short_global_header() {
    let dir = TempDir::new().unwrap();
    let long = "n".repeat(300);
    let bytes = tar_bytes(&[
        Item::File(&long, b"first"),
        Item::File("Dockerfile", DOCKERFILE),
    ]);
    assert_eq!(first_raw_of(&dir, &bytes).0, EntryType::GNULongName);
    let prepared = in_context(&dir, &bytes).unwrap();
    let archive = &prepared.context.archive;
    let (kind, size) = first_raw(archive);
    assert_eq!(kind, EntryType::XGlobalHeader);
    assert!(size <= 512, "{size}");
    assert_eq!(
        names(archive),
        vec!["pax_global_header", long.as_str(), "Dockerfile"]
    );
    assert_eq!(content(archive, &long), "first");
}

fn first_raw_of(dir: &TempDir, bytes: &[u8]) -> (EntryType, u64) {
    first_raw(&upload(dir, bytes).file)
}

#[test]
fn a_short_global_header_first_is_read_as_it_is() {
    assert!(!hides_first_header(EntryType::XGlobalHeader, 52));
    assert!(hides_first_header(EntryType::XGlobalHeader, 513));
    assert!(hides_first_header(EntryType::XHeader, 20));
    assert!(hides_first_header(EntryType::GNULongName, 101));
    assert!(!hides_first_header(EntryType::Directory, 0));
}

fn prepared_names(dir: &TempDir, bytes: &[u8], dockerfile: &str, builder: Builder) -> Vec<String> {
    let prepared = prepare(
        upload(dir, bytes),
        DockerfileSource::InContext(dockerfile.into()),
        1024,
        ROOMY,
        builder,
    )
    .unwrap();
    names(&prepared.context.archive)
}

#[test]
fn buildkit_takes_the_dockerfiles_own_ignore_file_and_legacy_the_root_one() {
    let dir = TempDir::new().unwrap();
    let bytes = tar_bytes(&[
        Item::File(".dockerignore", b"other.txt\n"),
        Item::File("build/app.Dockerfile", DOCKERFILE),
        Item::File(
            "build/app.Dockerfile.dockerignore",
            b"secrets.txt\n.dockerignore\n",
        ),
        Item::File("secrets.txt", b"s"),
        Item::File("other.txt", b"o"),
    ]);
    assert_eq!(
        prepared_names(&dir, &bytes, "build/app.Dockerfile", Builder::Buildkit),
        vec![
            "build/app.Dockerfile",
            "build/app.Dockerfile.dockerignore",
            "other.txt"
        ]
    );
    assert_eq!(
        prepared_names(&dir, &bytes, "build/app.Dockerfile", Builder::Legacy),
        vec![
            ".dockerignore",
            "build/app.Dockerfile",
            "build/app.Dockerfile.dockerignore",
            "secrets.txt"
        ]
    );
    // Without its own file, BuildKit too takes the root one.
    let root_only = tar_bytes(&[
        Item::File(".dockerignore", b"other.txt\n"),
        Item::File("Dockerfile", DOCKERFILE),
        Item::File("other.txt", b"o"),
    ]);
    assert_eq!(
        prepared_names(&dir, &root_only, "Dockerfile", Builder::Buildkit),
        vec![".dockerignore", "Dockerfile"]
    );
}

#[test]
fn a_bad_pattern_names_the_ignore_file_it_is_in() {
    let dir = TempDir::new().unwrap();
    let bytes = tar_bytes(&[
        Item::File("app.Dockerfile", DOCKERFILE),
        Item::File("app.Dockerfile.dockerignore", b"[oops\n"),
    ]);
    let err = prepare(
        upload(&dir, &bytes),
        DockerfileSource::InContext("app.Dockerfile".into()),
        1024,
        ROOMY,
        Builder::Buildkit,
    )
    .err()
    .unwrap();
    assert!(
        err.to_string().starts_with("app.Dockerfile.dockerignore: "),
        "{err}"
    );
}

#[test]
fn an_oversized_own_ignore_file_is_refused_by_name() {
    let dir = TempDir::new().unwrap();
    let huge = vec![b'#'; (MAX_DOCKERIGNORE_BYTES + 1) as usize];
    let bytes = tar_bytes(&[
        Item::File("app.Dockerfile", DOCKERFILE),
        Item::File("app.Dockerfile.dockerignore", &huge),
    ]);
    let refused = |builder| {
        prepare(
            upload(&dir, &bytes),
            DockerfileSource::InContext("app.Dockerfile".into()),
            1024,
            ROOMY,
            builder,
        )
    };
    let err = refused(Builder::Buildkit).err().unwrap();
    assert!(
        matches!(&err, ContextError::DockerignoreTooLarge(name) if name == "app.Dockerfile.dockerignore"),
        "{err}"
    );
    // The legacy builder does not read it: a file like any other.
    assert!(refused(Builder::Legacy).is_ok());
}

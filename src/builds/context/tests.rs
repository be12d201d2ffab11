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
        bytes: bytes.len() as u64,
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

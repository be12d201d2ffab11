//! What may be in a build context: regular files, directories and links that stay
//! inside it. Anything that could reach outside the context when unpacked, or
//! create device nodes, is refused before the archive goes near the daemon.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use tar::EntryType;

/// Why one entry is refused; shown with the entry's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unsafe {
    AbsolutePath,
    ParentComponent,
    DeviceNode,
    Fifo,
    LinkOutside(String),
    ThroughLink(String),
}

impl std::fmt::Display for Unsafe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unsafe::AbsolutePath => f.write_str("absolute paths are not allowed"),
            Unsafe::ParentComponent => f.write_str("'..' components are not allowed"),
            Unsafe::DeviceNode => f.write_str("device nodes are not allowed"),
            Unsafe::Fifo => f.write_str("named pipes are not allowed"),
            Unsafe::LinkOutside(target) => {
                write!(f, "it links to '{target}', outside the context")
            }
            Unsafe::ThroughLink(link) => write!(f, "its path goes through the link '{link}'"),
        }
    }
}

/// An entry's path as the context sees it: relative, `/`-separated, without `.`
/// components; "" for the context's root itself.
pub fn clean_path(path: &Path) -> Result<String, Unsafe> {
    let mut parts = Vec::new();
    for component in path.components() {
        match component {
            Component::RootDir | Component::Prefix(_) => return Err(Unsafe::AbsolutePath),
            Component::ParentDir => return Err(Unsafe::ParentComponent),
            Component::CurDir => {}
            Component::Normal(part) => parts.push(part.to_string_lossy()),
        }
    }
    Ok(parts.join("/"))
}

/// Remembers the links seen so far, so that a later entry cannot be unpacked
/// through one of them into a place the link check never looked at.
#[derive(Default)]
pub struct EntryChecker {
    /// Symlinks by path, with their targets.
    links: HashMap<String, PathBuf>,
}

impl EntryChecker {
    /// Checks one entry; `path` is its cleaned path.
    pub fn check(
        &mut self,
        path: &str,
        kind: EntryType,
        link_target: Option<&Path>,
    ) -> Result<(), Unsafe> {
        if let Some(link) = self.link_above(path) {
            return Err(Unsafe::ThroughLink(link.to_string()));
        }
        match kind {
            EntryType::Char | EntryType::Block => Err(Unsafe::DeviceNode),
            EntryType::Fifo => Err(Unsafe::Fifo),
            EntryType::Symlink => self.add_symlink(path, link_target.unwrap_or(Path::new(""))),
            // A hard link's target is another entry, named from the context's root.
            EntryType::Link => {
                let target = link_target.unwrap_or(Path::new(""));
                let Ok(entry) = clean_path(target) else {
                    return Err(Unsafe::LinkOutside(target.display().to_string()));
                };
                // A hard link to a symlink is that symlink again, read from the
                // hard link's own folder, where its target may lead elsewhere.
                match self.links.get(&entry).cloned() {
                    Some(symlink_target) => self.add_symlink(path, &symlink_target),
                    None => Ok(()),
                }
            }
            _ => Ok(()),
        }
    }

    fn add_symlink(&mut self, path: &str, target: &Path) -> Result<(), Unsafe> {
        let parent = path.rsplit_once('/').map_or("", |(dir, _)| dir);
        if !stays_inside(parent, target) {
            return Err(Unsafe::LinkOutside(target.display().to_string()));
        }
        self.links.insert(path.to_string(), target.to_path_buf());
        Ok(())
    }

    fn link_above<'a>(&self, path: &'a str) -> Option<&'a str> {
        path.match_indices('/')
            .map(|(end, _)| &path[..end])
            .find(|ancestor| self.links.contains_key(*ancestor))
    }
}

/// Whether `target`, read from the directory `from` (relative to the root), names a
/// place inside the root. Absolute targets are outside: they name the host's files.
fn stays_inside(from: &str, target: &Path) -> bool {
    let mut depth = from.split('/').filter(|part| !part.is_empty()).count();
    for component in target.components() {
        match component {
            Component::RootDir | Component::Prefix(_) => return false,
            Component::ParentDir if depth == 0 => return false,
            Component::ParentDir => depth -= 1,
            Component::CurDir => {}
            Component::Normal(_) => depth += 1,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleans_relative_paths_and_refuses_escapes() {
        assert_eq!(clean_path(Path::new("./a/./b")), Ok("a/b".into()));
        assert_eq!(clean_path(Path::new("./")), Ok("".into()));
        assert_eq!(
            clean_path(Path::new("/etc/passwd")),
            Err(Unsafe::AbsolutePath)
        );
        assert_eq!(
            clean_path(Path::new("a/../b")),
            Err(Unsafe::ParentComponent)
        );
    }

    #[test]
    fn links_must_stay_inside() {
        let mut checker = EntryChecker::default();
        let link = |target: &str| Some(Path::new(target)).map(|p| p.to_path_buf());
        let mut check = |path: &str, target: &str| {
            checker.check(path, EntryType::Symlink, link(target).as_deref())
        };
        assert!(check("a/b/up", "../c").is_ok());
        assert!(check("a/up2", "../x").is_ok());
        assert!(matches!(
            check("a/out", "../../x"),
            Err(Unsafe::LinkOutside(_))
        ));
        assert!(matches!(
            check("abs", "/etc/passwd"),
            Err(Unsafe::LinkOutside(_))
        ));
        assert!(check("self", ".").is_ok());
        assert_eq!(
            checker.check("self/x", EntryType::Regular, None),
            Err(Unsafe::ThroughLink("self".into()))
        );
    }

    #[test]
    fn hard_links_name_entries_inside() {
        let mut checker = EntryChecker::default();
        assert!(checker
            .check("h", EntryType::Link, Some(Path::new("a/b")))
            .is_ok());
        assert!(checker
            .check("h", EntryType::Link, Some(Path::new("../etc/passwd")))
            .is_err());
        assert!(checker
            .check("h", EntryType::Link, Some(Path::new("/etc/passwd")))
            .is_err());
    }

    #[test]
    fn a_hard_link_to_a_symlink_is_checked_as_that_symlink_where_it_lies() {
        let mut checker = EntryChecker::default();
        let symlink = checker.check("a/b/up", EntryType::Symlink, Some(Path::new("../../x")));
        assert!(symlink.is_ok(), "inside, seen from a/b");
        assert_eq!(
            checker.check("h", EntryType::Link, Some(Path::new("a/b/up"))),
            Err(Unsafe::LinkOutside("../../x".into())),
            "the same target from the root leaves the context"
        );
        assert!(checker
            .check("c/d/h", EntryType::Link, Some(Path::new("a/b/up")))
            .is_ok());
        assert_eq!(
            checker.check("c/d/h/inner", EntryType::Regular, None),
            Err(Unsafe::ThroughLink("c/d/h".into()))
        );
    }

    #[test]
    fn special_files_are_refused() {
        let mut checker = EntryChecker::default();
        assert_eq!(
            checker.check("dev/sda", EntryType::Block, None),
            Err(Unsafe::DeviceNode)
        );
        assert_eq!(
            checker.check("null", EntryType::Char, None),
            Err(Unsafe::DeviceNode)
        );
        assert_eq!(checker.check("p", EntryType::Fifo, None), Err(Unsafe::Fifo));
        assert!(checker.check("d", EntryType::Directory, None).is_ok());
    }
}

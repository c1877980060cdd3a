//! The layering of the crate, checked (as rust-analyzer's tidy tests do).
//!
//! Each room's `mod.rs` lists its modules in dependency order as
//! "//! - `name`: ..." lines; that list is the documented order and this
//! test reads it. The rules (ARCHITECTURE.md, "The wings"):
//!
//! - `shared` imports no wing; within it a module imports only the modules
//!   listed before it.
//! - `dns`, `control` and `monitor` each import only themselves and
//!   `shared`; within a wing a module imports only the modules listed
//!   before it.
//! - The DNS wing and the shared floor name none of the control plane's
//!   crates (sqlx, axum, minijinja, argon2, plotters).
//! - Every module of a room is in its list.
//! - `demo`, `lib.rs` and the binary may import anything.
//!
//! Every `crate::` path counts, in `use` lines (groups included) and in
//! code, and so do `super::` paths that climb out of a module.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The rooms whose imports are checked, and the crates each must not name.
const ROOMS: [(&str, &[&str]); 4] = [
    (
        "shared",
        &["sqlx", "axum", "minijinja", "argon2", "plotters"],
    ),
    ("dns", &["sqlx", "axum", "minijinja", "argon2", "plotters"]),
    ("control", &[]),
    ("monitor", &["sqlx", "axum", "minijinja"]),
];

/// One file of the crate: its module path and its code without comments
/// and string literals.
struct SourceFile {
    path: PathBuf,
    module: Vec<String>,
    code: String,
}

/// A room's modules in their documented order.
type Orders = BTreeMap<String, Vec<String>>;

/// The "//! - `name`:" lines of a room's mod.rs, in order.
fn documented_order(mod_rs: &str) -> Vec<String> {
    mod_rs
        .lines()
        .filter_map(|line| line.strip_prefix("//! - `"))
        .filter_map(|rest| rest.split_once('`'))
        .map(|(name, _)| name.to_string())
        .collect()
}

/// Source text with comments, string and character literals blanked, so
/// that only code is searched for paths.
fn strip_comments_and_strings(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        let rest = &text[i..];
        if rest.starts_with("//") {
            let end = rest.find('\n').map_or(text.len(), |n| i + n);
            i = end;
        } else if rest.starts_with("/*") {
            let end = rest.find("*/").map_or(text.len(), |n| i + n + 2);
            i = end;
        } else if rest.starts_with("r#\"") || rest.starts_with("r\"") {
            let hashes = rest[1..].bytes().take_while(|&b| b == b'#').count();
            let close = format!("\"{}", "#".repeat(hashes));
            let body = 2 + hashes;
            let end = rest[body..]
                .find(&close)
                .map_or(text.len(), |n| i + body + n + close.len());
            out.push_str("\"\"");
            i = end;
        } else if bytes[i] == b'"' {
            let mut j = i + 1;
            while j < bytes.len() && bytes[j] != b'"' {
                j += if bytes[j] == b'\\' { 2 } else { 1 };
            }
            out.push_str("\"\"");
            i = j + 1;
        } else if bytes[i] == b'\''
            && rest.len() > 2
            && (rest[1..].starts_with('\\') || rest[2..].starts_with('\''))
        {
            // A character literal ('x', '\n'), not a lifetime.
            let end = rest[2..].find('\'').map_or(text.len(), |n| i + 2 + n + 1);
            out.push_str("' '");
            i = end;
        } else {
            let c = rest.chars().next().unwrap_or(' ');
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// Every path a piece of code names through `crate::` or `super::`,
/// absolute, use groups expanded; each with whether it came through
/// `super::` (which this reading resolves from the file's module, so
/// inside an inline `mod tests` it lands one level too high).
fn referenced_paths(module: &[String], code: &str) -> Vec<(Vec<String>, bool)> {
    let mut paths = Vec::new();
    let mut rest = code;
    while let Some(at) = find_path_start(rest) {
        let via_super = !rest[at..].starts_with("crate::");
        let (root, after) = if !via_super {
            (Vec::new(), &rest[at + "crate::".len()..])
        } else {
            // One or more `super::`: from the parent of this module. A
            // `mod.rs` is its directory's module, so its parent is one up.
            let mut base = module.to_vec();
            let mut after = &rest[at..];
            while let Some(next) = after.strip_prefix("super::") {
                base.pop();
                after = next;
            }
            (base, after)
        };
        let mut found = Vec::new();
        let consumed = expand_tree(&root, after, &mut found);
        paths.extend(found.into_iter().map(|path| (path, via_super)));
        let offset = after.as_ptr() as usize - rest.as_ptr() as usize;
        rest = &rest[offset + consumed.max(1)..];
    }
    paths
}

/// Where the next `crate::` or `super::` starts, not inside a longer
/// identifier.
fn find_path_start(text: &str) -> Option<usize> {
    let mut from = 0;
    loop {
        let crate_at = text[from..].find("crate::").map(|n| from + n);
        let super_at = text[from..].find("super::").map(|n| from + n);
        let at = match (crate_at, super_at) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b)?,
        };
        let before = text[..at].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            from = at + 1;
            continue;
        }
        return Some(at);
    }
}

/// Expand a use tree or path that follows `prefix::` into `paths`;
/// returns how many bytes of `text` it took.
fn expand_tree(prefix: &[String], text: &str, paths: &mut Vec<Vec<String>>) -> usize {
    let mut path = prefix.to_vec();
    let mut i = 0;
    let bytes = text.as_bytes();
    loop {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if i < bytes.len() && bytes[i] == b'{' {
            // A group: each item is a tree of its own.
            i += 1;
            loop {
                while i < bytes.len() && (bytes[i].is_ascii_whitespace() || bytes[i] == b',') {
                    i += 1;
                }
                if i >= bytes.len() || bytes[i] == b'}' {
                    return i + 1;
                }
                i += expand_tree(&path, &text[i..], paths);
            }
        }
        let start = i;
        while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
            i += 1;
        }
        let segment = &text[start..i];
        if segment.is_empty() || segment == "self" || segment == "*" {
            if i < bytes.len() && bytes[i] == b'*' {
                i += 1;
            }
            if path.len() > prefix.len() || segment.is_empty() {
                paths.push(path);
            }
            return i;
        }
        path.push(segment.to_string());
        if text[i..].starts_with("::") {
            i += 2;
            continue;
        }
        paths.push(path);
        return i;
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a file under src/ (`src/dns/server/udp.rs` is
/// dns::server::udp, `src/dns/server/mod.rs` dns::server).
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(src).unwrap_or(file);
    let mut module: Vec<String> = relative
        .with_extension("")
        .iter()
        .map(|part| part.to_string_lossy().into_owned())
        .collect();
    if module
        .last()
        .is_some_and(|last| last == "mod" || last == "lib" || last == "main")
    {
        module.pop();
    }
    module
}

fn load(src: &Path) -> (Vec<SourceFile>, Orders) {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut orders = Orders::new();
    for (room, _) in ROOMS {
        let mod_rs = src.join(room).join("mod.rs");
        let text = std::fs::read_to_string(&mod_rs)
            .unwrap_or_else(|e| panic!("{}: {e}", mod_rs.display()));
        orders.insert(room.to_string(), documented_order(&text));
    }
    let files = files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            SourceFile {
                module: module_of(src, &path),
                code: strip_comments_and_strings(&text),
                path,
            }
        })
        .collect();
    (files, orders)
}

/// Why a file breaks the layering; empty when it does not.
fn violations(file: &SourceFile, orders: &Orders) -> Vec<String> {
    let Some(room) = file.module.first() else {
        return Vec::new();
    };
    let Some((_, banned_crates)) = ROOMS.iter().find(|(name, _)| name == room) else {
        // demo, lib.rs, main.rs, bench.rs: anything goes.
        return Vec::new();
    };
    let order = &orders[room.as_str()];
    let mut found = Vec::new();
    let name = file.path.display();
    let own_rank = match file.module.get(1) {
        // The room's mod.rs declares its modules.
        None => None,
        Some(module) => match order.iter().position(|m| m == module) {
            Some(rank) => Some(rank),
            None => {
                found.push(format!(
                    "{name}: module {room}::{module} is not in the documented order of src/{room}/mod.rs"
                ));
                return found;
            }
        },
    };
    for (path, via_super) in referenced_paths(&file.module, &file.code) {
        let Some(target_room) = path.first() else {
            continue;
        };
        let target = path.join("::");
        if target_room != room && target_room != "shared" {
            found.push(format!("{name}: {room} imports crate::{target}"));
            continue;
        }
        if target_room != room {
            continue;
        }
        let (Some(own_rank), Some(module)) = (own_rank, path.get(1)) else {
            continue;
        };
        match order.iter().position(|m| m == module) {
            Some(rank) if rank <= own_rank => {}
            Some(_) => found.push(format!(
                "{name}: {room}::{} imports crate::{target}, which the order of src/{room}/mod.rs puts after it",
                file.module[1]
            )),
            // An item of an inline module's parent, reached by `super::`.
            None if via_super => {}
            None => found.push(format!("{name}: imports crate::{target}, not a module of {room}")),
        }
    }
    for banned in banned_crates.iter() {
        let named = file
            .code
            .match_indices(&format!("{banned}::"))
            .any(|(at, _)| {
                !file.code[..at]
                    .chars()
                    .next_back()
                    .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':')
            });
        if named {
            found.push(format!("{name}: {room} names the crate {banned}"));
        }
    }
    found
}

#[test]
fn the_crate_follows_its_layering() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let (files, orders) = load(&src);
    for (room, _) in ROOMS {
        assert!(
            !orders[room].is_empty(),
            "src/{room}/mod.rs lists no modules as \"//! - `name`: ...\""
        );
    }
    let problems: Vec<String> = files.iter().flat_map(|f| violations(f, &orders)).collect();
    assert!(
        problems.is_empty(),
        "layering broken:\n{}",
        problems.join("\n")
    );
}

/// The checker itself: each case is a file (module path and code) and
/// whether the layering allows it.
#[test]
fn the_checker_finds_what_it_should() {
    let orders: Orders = [
        ("shared", vec!["netaddr", "geo", "snapshot"]),
        ("dns", vec!["wire", "zone", "answer", "server"]),
        ("control", vec!["scoring", "db", "web"]),
        ("monitor", vec!["ntp", "agent"]),
    ]
    .into_iter()
    .map(|(room, modules)| {
        (
            room.to_string(),
            modules.into_iter().map(String::from).collect(),
        )
    })
    .collect();
    let cases: [(&str, &str, bool); 18] = [
        (
            "dns::zone",
            "use crate::shared::snapshot::SnapshotSpec;",
            true,
        ),
        ("dns::zone", "use crate::dns::wire::HEADER_LEN;", true),
        ("dns::zone", "use crate::control::db::Db;", false),
        ("dns::zone", "use crate::{dns::wire, control::db};", false),
        ("dns::zone", "use crate::{dns::{wire, answer}};", false),
        (
            "dns::zone",
            "fn f() { crate::monitor::agent::run(); }",
            false,
        ),
        ("dns::zone", "use crate::dns::answer::respond;", false),
        (
            "dns::server::udp",
            "use super::super::answer::respond;",
            true,
        ),
        (
            "dns::wire::query",
            "use super::super::zone::ZoneTable;",
            false,
        ),
        ("dns::server", "use sqlx::Row;", false),
        ("dns::zone", "// crate::control::db in a comment", true),
        ("dns::zone", "let s = \"crate::control::db\";", true),
        (
            "shared::geo",
            "use crate::shared::netaddr::is_public_unicast;",
            true,
        ),
        ("shared::geo", "use crate::shared::snapshot::parse;", false),
        (
            "shared::snapshot",
            "use crate::dns::wire::MAX_NAME_LEN;",
            false,
        ),
        (
            "control::web",
            "use crate::control::db::Db; use crate::shared::geo;",
            true,
        ),
        ("control::db", "use crate::control::web::AppState;", false),
        (
            "monitor::agent",
            "use crate::control::web::shutdown_signal;",
            false,
        ),
    ];
    for (module, code, allowed) in cases {
        let file = SourceFile {
            path: PathBuf::from(format!("src/{}.rs", module.replace("::", "/"))),
            module: module.split("::").map(String::from).collect(),
            code: strip_comments_and_strings(code),
        };
        let found = violations(&file, &orders);
        assert_eq!(found.is_empty(), allowed, "{module}: {code}: {found:?}");
    }
    let unknown = SourceFile {
        path: PathBuf::from("src/dns/cache.rs"),
        module: vec!["dns".into(), "cache".into()],
        code: String::new(),
    };
    assert!(
        violations(&unknown, &orders)[0].contains("not in the documented order"),
        "a module missing from the list is reported"
    );
}

//! Validation of a snapshot's JSON, collecting every problem with its path.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use serde_json::{Map, Value};

use super::{
    AliasSpec, FORMAT_VERSION, MAX_HOSTS_LIMIT, MAX_NUMBERED_LABELS, OriginSpec, Problem,
    ServerSpec, SnapshotSpec, SoaSpec, ZoneSpec,
};

/// Labels the daemon answers itself under every origin; a zone or alias
/// may not take them.
const RESERVED_LABELS: &[&str] = &["_country", "_status"];

/// Caps on what a snapshot may ask resolvers to cache (zones/README.md,
/// "TTL limits"): even a signed mistake may pin a resolver for at most
/// this long. Answers change with the scores, so they get the shortest.
pub const MAX_ANSWER_TTL: u64 = 3_600;
pub const MAX_NS_TTL: u64 = 172_800;
pub const MAX_SOA_TTL: u64 = 86_400;
/// SOA `minimum`: the negative-caching TTL (RFC 2308).
pub const MAX_SOA_MINIMUM: u64 = 86_400;
/// SOA `refresh` and `retry` (for secondaries; timepool has none, but the
/// values are published).
pub const MAX_SOA_REFRESH: u64 = 86_400;
/// SOA `expire`: four weeks.
pub const MAX_SOA_EXPIRE: u64 = 2_419_200;

/// Most name servers an origin may list: the NS answer must fit a
/// response (and a compression pointer's 16 KiB reach), and no delegation
/// has more than 13.
const MAX_NS: usize = 16;

/// Collects problems while walking the document.
struct Checker {
    problems: Vec<Problem>,
}

impl Checker {
    fn problem(&mut self, path: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            path: path.to_string(),
            message: message.into(),
        });
    }

    fn object<'v>(&mut self, value: &'v Value, path: &str) -> Option<&'v Map<String, Value>> {
        match value.as_object() {
            Some(map) => Some(map),
            None => {
                self.problem(path, format!("expected an object, found {}", kind(value)));
                None
            }
        }
    }

    fn array<'v>(&mut self, value: &'v Value, path: &str) -> Option<&'v Vec<Value>> {
        match value.as_array() {
            Some(items) => Some(items),
            None => {
                self.problem(path, format!("expected an array, found {}", kind(value)));
                None
            }
        }
    }

    fn field<'v>(
        &mut self,
        map: &'v Map<String, Value>,
        path: &str,
        key: &str,
    ) -> Option<&'v Value> {
        let value = map.get(key);
        if value.is_none() {
            self.problem(&format!("{path}.{key}"), "missing");
        }
        value
    }

    fn unknown_fields(&mut self, map: &Map<String, Value>, path: &str, known: &[&str]) {
        for key in map.keys() {
            if !known.contains(&key.as_str()) {
                self.problem(
                    &format!("{path}.{key}"),
                    format!("unknown field (known: {})", known.join(", ")),
                );
            }
        }
    }

    fn integer(&mut self, value: &Value, path: &str, min: u64, max: u64) -> Option<u64> {
        match value.as_u64() {
            Some(n) if (min..=max).contains(&n) => Some(n),
            Some(n) => {
                self.problem(path, format!("{n} is out of range {min}..={max}"));
                None
            }
            None => {
                self.problem(
                    path,
                    format!("expected a whole number, found {}", kind(value)),
                );
                None
            }
        }
    }

    fn integer_field(
        &mut self,
        map: &Map<String, Value>,
        path: &str,
        key: &str,
        min: u64,
        max: u64,
    ) -> Option<u64> {
        let value = self.field(map, path, key)?;
        self.integer(value, &format!("{path}.{key}"), min, max)
    }

    fn string<'v>(&mut self, value: &'v Value, path: &str) -> Option<&'v str> {
        match value.as_str() {
            Some(text) => Some(text),
            None => {
                self.problem(path, format!("expected a string, found {}", kind(value)));
                None
            }
        }
    }

    fn domain_name(&mut self, value: &Value, path: &str) -> Option<String> {
        let text = self.string(value, path)?;
        match normalize_domain_name(text) {
            Ok(name) => Some(name),
            Err(reason) => {
                self.problem(path, format!("{text:?} is not a domain name: {reason}"));
                None
            }
        }
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Lowercase a domain name and drop a trailing dot; check the length limits
/// and the characters (letters, digits, hyphen, underscore).
pub fn normalize_domain_name(text: &str) -> Result<String, String> {
    let name = text.strip_suffix('.').unwrap_or(text).to_ascii_lowercase();
    if name.is_empty() {
        return Err("empty".into());
    }
    if name.len() + 2 > crate::shared::dns_name::MAX_NAME_LEN {
        return Err("longer than 253 characters".into());
    }
    for label in name.split('.') {
        check_label(label)?;
    }
    Ok(name)
}

fn check_label(label: &str) -> Result<(), String> {
    if label.is_empty() {
        return Err("empty label".into());
    }
    if label.len() > crate::shared::dns_name::MAX_LABEL_LEN {
        return Err(format!("label {label:?} is longer than 63 bytes"));
    }
    if !label
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(format!(
            "label {label:?} may only hold letters, digits, '-' and '_'"
        ));
    }
    Ok(())
}

/// A zone or alias name: `@` or one lowercase label that is not a number
/// (numbers are the numbered labels) and not reserved.
fn check_zone_label(name: &str) -> Result<(), String> {
    if name == "@" {
        return Ok(());
    }
    check_label(name)?;
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err("must be lowercase".into());
    }
    if name.bytes().all(|b| b.is_ascii_digit()) {
        return Err("a number would clash with the numbered labels".into());
    }
    if RESERVED_LABELS.contains(&name) {
        return Err("reserved for the daemon's own names".into());
    }
    Ok(())
}

/// Validate a parsed snapshot. Returns every problem found.
pub fn validate(document: &Value) -> Result<SnapshotSpec, Vec<Problem>> {
    let mut checker = Checker {
        problems: Vec::new(),
    };
    let spec = validate_document(&mut checker, document);
    match spec {
        Some(spec) if checker.problems.is_empty() => Ok(spec),
        _ => {
            if checker.problems.is_empty() {
                checker.problem("$", "invalid snapshot");
            }
            Err(checker.problems)
        }
    }
}

fn validate_document(checker: &mut Checker, document: &Value) -> Option<SnapshotSpec> {
    let root = checker.object(document, "$")?;
    checker.unknown_fields(
        root,
        "$",
        &[
            "version",
            "serial",
            "generated",
            "origins",
            "servers",
            "zones",
            "aliases",
        ],
    );
    if let Some(version) = checker.field(root, "$", "version")
        && version.as_u64() != Some(FORMAT_VERSION)
    {
        checker.problem(
            "$.version",
            format!("this build reads version {FORMAT_VERSION}, found {version}"),
        );
    }
    let serial = checker.integer_field(root, "$", "serial", 1, u64::from(u32::MAX));
    if let Some(generated) = root.get("generated") {
        checker.string(generated, "$.generated");
    }
    let origins = validate_origins(checker, root.get("origins"));
    let (servers, server_index) = validate_servers(checker, root.get("servers"));
    let zones = validate_zones(checker, root.get("zones"), &server_index);
    // Aliases are checked against the zone names as written, so that a
    // problem inside a zone does not also flag every alias of it.
    let zone_names: HashMap<&str, usize> = root
        .get("zones")
        .and_then(Value::as_object)
        .map(|map| {
            map.keys()
                .enumerate()
                .map(|(i, k)| (k.as_str(), i))
                .collect()
        })
        .unwrap_or_default();
    let aliases = validate_aliases(checker, root.get("aliases"), &zone_names);
    Some(SnapshotSpec {
        serial: serial? as u32,
        origins: origins?,
        servers: servers?,
        zones: zones?,
        aliases: aliases?,
    })
}

fn validate_origins(checker: &mut Checker, value: Option<&Value>) -> Option<Vec<OriginSpec>> {
    let Some(value) = value else {
        checker.problem("$.origins", "missing");
        return None;
    };
    let items = checker.array(value, "$.origins")?;
    if items.is_empty() {
        checker.problem("$.origins", "at least one origin is needed");
    }
    let mut origins = Vec::new();
    let mut seen = HashSet::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("$.origins[{i}]");
        if let Some(origin) = validate_origin(checker, item, &path) {
            if !seen.insert(origin.name.clone()) {
                checker.problem(
                    &format!("{path}.name"),
                    format!("origin {} appears twice", origin.name),
                );
            }
            origins.push(origin);
        }
    }
    (origins.len() == items.len()).then_some(origins)
}

fn validate_origin(checker: &mut Checker, value: &Value, path: &str) -> Option<OriginSpec> {
    let map = checker.object(value, path)?;
    checker.unknown_fields(
        map,
        path,
        &[
            "name",
            "soa",
            "ns",
            "ns_ttl",
            "answer_ttl",
            "max_hosts",
            "ipv6_everywhere",
        ],
    );
    let name = checker
        .field(map, path, "name")
        .and_then(|v| checker.domain_name(v, &format!("{path}.name")));
    let soa = checker
        .field(map, path, "soa")
        .and_then(|v| validate_soa(checker, v, &format!("{path}.soa")));
    let ns = checker.field(map, path, "ns").and_then(|v| {
        let ns_path = format!("{path}.ns");
        let items = checker.array(v, &ns_path)?;
        if items.is_empty() {
            checker.problem(&ns_path, "at least one name server is needed");
            return None;
        }
        if items.len() > MAX_NS {
            checker.problem(
                &ns_path,
                format!("at most {MAX_NS} name servers, not {}", items.len()),
            );
            return None;
        }
        let names: Vec<Option<String>> = items
            .iter()
            .enumerate()
            .map(|(i, item)| checker.domain_name(item, &format!("{ns_path}[{i}]")))
            .collect();
        names.into_iter().collect::<Option<Vec<String>>>()
    });
    let ns_ttl = checker.integer_field(map, path, "ns_ttl", 0, MAX_NS_TTL);
    let answer_ttl = checker.integer_field(map, path, "answer_ttl", 0, MAX_ANSWER_TTL);
    let max_hosts = checker.integer_field(map, path, "max_hosts", 1, MAX_HOSTS_LIMIT as u64);
    let ipv6_everywhere = match map.get("ipv6_everywhere") {
        None => Some(false),
        Some(Value::Bool(flag)) => Some(*flag),
        Some(other) => {
            checker.problem(
                &format!("{path}.ipv6_everywhere"),
                format!("expected true or false, found {}", kind(other)),
            );
            None
        }
    };
    Some(OriginSpec {
        name: name?,
        soa: soa?,
        ns: ns?,
        ns_ttl: ns_ttl? as u32,
        answer_ttl: answer_ttl? as u32,
        max_hosts: max_hosts? as usize,
        ipv6_everywhere: ipv6_everywhere?,
    })
}

fn validate_soa(checker: &mut Checker, value: &Value, path: &str) -> Option<SoaSpec> {
    let map = checker.object(value, path)?;
    checker.unknown_fields(
        map,
        path,
        &[
            "mname", "rname", "refresh", "retry", "expire", "minimum", "ttl",
        ],
    );
    let mname = checker
        .field(map, path, "mname")
        .and_then(|v| checker.domain_name(v, &format!("{path}.mname")));
    let rname = checker
        .field(map, path, "rname")
        .and_then(|v| checker.domain_name(v, &format!("{path}.rname")));
    let mut number = |key, max| checker.integer_field(map, path, key, 0, max);
    let refresh = number("refresh", MAX_SOA_REFRESH);
    let retry = number("retry", MAX_SOA_REFRESH);
    let expire = number("expire", MAX_SOA_EXPIRE);
    let minimum = number("minimum", MAX_SOA_MINIMUM);
    let ttl = number("ttl", MAX_SOA_TTL);
    Some(SoaSpec {
        mname: mname?,
        rname: rname?,
        refresh: refresh? as u32,
        retry: retry? as u32,
        expire: expire? as u32,
        minimum: minimum? as u32,
        ttl: ttl? as u32,
    })
}

type ServerIndex = HashMap<u64, usize>;

fn validate_servers(
    checker: &mut Checker,
    value: Option<&Value>,
) -> (Option<Vec<ServerSpec>>, ServerIndex) {
    let mut index = ServerIndex::new();
    let Some(value) = value else {
        checker.problem("$.servers", "missing");
        return (None, index);
    };
    let Some(items) = checker.array(value, "$.servers") else {
        return (None, index);
    };
    let mut servers = Vec::with_capacity(items.len());
    let mut addresses: HashMap<IpAddr, u64> = HashMap::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("$.servers[{i}]");
        let Some(map) = checker.object(item, &path) else {
            continue;
        };
        checker.unknown_fields(map, &path, &["id", "address", "weight"]);
        let id = checker.integer_field(map, &path, "id", 0, u64::MAX);
        let address = checker.field(map, &path, "address").and_then(|v| {
            let address_path = format!("{path}.address");
            let text = checker.string(v, &address_path)?;
            match text.parse::<IpAddr>() {
                Ok(address) => Some(address),
                Err(_) => {
                    checker.problem(
                        &address_path,
                        format!("{text:?} is not an IPv4 or IPv6 address"),
                    );
                    None
                }
            }
        });
        let weight = checker.integer_field(map, &path, "weight", 1, u64::from(u32::MAX));
        // The id is indexed even when another field is bad, so that the
        // zones naming it are not flagged too. Indexes are positions in
        // the list; they are only used when every server is valid.
        if let Some(id) = id
            && index.insert(id, i).is_some()
        {
            checker.problem(
                &format!("{path}.id"),
                format!("server id {id} appears twice"),
            );
        }
        let (Some(id), Some(address), Some(weight)) = (id, address, weight) else {
            continue;
        };
        if let Some(other) = addresses.insert(address, id) {
            checker.problem(
                &format!("{path}.address"),
                format!("{address} is also the address of server {other}"),
            );
        }
        servers.push(ServerSpec {
            id,
            address,
            weight: weight as u32,
        });
    }
    let complete = servers.len() == items.len();
    (complete.then_some(servers), index)
}

fn validate_server_list(
    checker: &mut Checker,
    value: &Value,
    path: &str,
    servers: &ServerIndex,
) -> Option<Vec<usize>> {
    let items = checker.array(value, path)?;
    let mut list = Vec::with_capacity(items.len());
    let mut seen = HashSet::new();
    let mut complete = true;
    for (i, item) in items.iter().enumerate() {
        let item_path = format!("{path}[{i}]");
        let Some(id) = checker.integer(item, &item_path, 0, u64::MAX) else {
            complete = false;
            continue;
        };
        match servers.get(&id) {
            Some(&index) => {
                if !seen.insert(index) {
                    checker.problem(&item_path, format!("server {id} is listed twice"));
                    complete = false;
                }
                list.push(index);
            }
            None => {
                checker.problem(&item_path, format!("no server has id {id}"));
                complete = false;
            }
        }
    }
    complete.then_some(list)
}

fn validate_zones(
    checker: &mut Checker,
    value: Option<&Value>,
    servers: &ServerIndex,
) -> Option<Vec<ZoneSpec>> {
    let Some(value) = value else {
        checker.problem("$.zones", "missing");
        return None;
    };
    let problems_before = checker.problems.len();
    let map = checker.object(value, "$.zones")?;
    if !map.contains_key("@") {
        checker.problem("$.zones", "the global zone \"@\" is missing");
    }
    // Parents are resolved after every zone name is known.
    let names: HashMap<&str, usize> = map
        .keys()
        .enumerate()
        .map(|(i, k)| (k.as_str(), i))
        .collect();
    let mut zones = Vec::with_capacity(map.len());
    let mut complete = true;
    for (name, zone_value) in map {
        let path = format!("$.zones.{name}");
        if let Err(reason) = check_zone_label(name) {
            checker.problem(&path, format!("zone name {name:?}: {reason}"));
            complete = false;
        }
        let Some(zone) = checker.object(zone_value, &path) else {
            complete = false;
            continue;
        };
        checker.unknown_fields(zone, &path, &["parent", "servers", "numbered"]);
        let parent = match (name.as_str(), zone.get("parent")) {
            ("@", None | Some(Value::Null)) => Some(None),
            ("@", Some(_)) => {
                checker.problem(&format!("{path}.parent"), "the global zone has no parent");
                None
            }
            (_, None | Some(Value::Null)) => {
                checker.problem(
                    &format!("{path}.parent"),
                    "missing (every zone but \"@\" has one)",
                );
                None
            }
            (_, Some(parent)) => {
                let parent_path = format!("{path}.parent");
                checker
                    .string(parent, &parent_path)
                    .and_then(|parent| match names.get(parent) {
                        Some(&index) => Some(Some(index)),
                        None => {
                            checker.problem(&parent_path, format!("no zone is named {parent:?}"));
                            None
                        }
                    })
            }
        };
        let server_list = checker
            .field(zone, &path, "servers")
            .and_then(|v| validate_server_list(checker, v, &format!("{path}.servers"), servers));
        let numbered = match zone.get("numbered") {
            None => Some(Vec::new()),
            Some(value) => {
                let numbered_path = format!("{path}.numbered");
                checker.array(value, &numbered_path).and_then(|lists| {
                    if lists.len() > MAX_NUMBERED_LABELS {
                        checker.problem(
                            &numbered_path,
                            format!("at most {MAX_NUMBERED_LABELS} numbered labels"),
                        );
                        return None;
                    }
                    let parsed: Vec<Option<Vec<usize>>> = lists
                        .iter()
                        .enumerate()
                        .map(|(i, list)| {
                            validate_server_list(
                                checker,
                                list,
                                &format!("{numbered_path}[{i}]"),
                                servers,
                            )
                        })
                        .collect();
                    parsed.into_iter().collect::<Option<Vec<_>>>()
                })
            }
        };
        // A numbered label deals servers of the zone; anything else is a
        // builder bug that would publish a server outside its zone.
        if let (Some(all), Some(numbered)) = (&server_list, &numbered) {
            let members: HashSet<usize> = all.iter().copied().collect();
            for (label, list) in numbered.iter().enumerate() {
                for (i, server) in list.iter().enumerate() {
                    if !members.contains(server) {
                        checker.problem(
                            &format!("{path}.numbered[{label}][{i}]"),
                            "server is not in the zone's own server list",
                        );
                        complete = false;
                    }
                }
            }
        }
        match (parent, server_list, numbered) {
            (Some(parent), Some(servers), Some(numbered)) => zones.push(ZoneSpec {
                name: name.clone(),
                parent,
                servers,
                numbered,
            }),
            _ => complete = false,
        }
    }
    if complete {
        check_zone_tree(checker, &zones);
    }
    (complete && checker.problems.len() == problems_before).then_some(zones)
}

/// Every zone must reach `@` by following parents, without a cycle.
fn check_zone_tree(checker: &mut Checker, zones: &[ZoneSpec]) {
    for zone in zones {
        let mut current = zone;
        let mut steps = 0;
        while let Some(parent) = current.parent {
            current = &zones[parent];
            steps += 1;
            if steps > zones.len() {
                checker.problem(
                    &format!("$.zones.{}.parent", zone.name),
                    "the parent chain loops and never reaches \"@\"",
                );
                break;
            }
        }
    }
}

fn validate_aliases(
    checker: &mut Checker,
    value: Option<&Value>,
    zones: &HashMap<&str, usize>,
) -> Option<Vec<AliasSpec>> {
    let Some(value) = value else {
        return Some(Vec::new());
    };
    let map = checker.object(value, "$.aliases")?;
    let mut aliases = Vec::with_capacity(map.len());
    for (name, target) in map {
        let path = format!("$.aliases.{name}");
        if let Err(reason) = check_zone_label(name) {
            checker.problem(&path, format!("alias name {name:?}: {reason}"));
            continue;
        }
        if name == "@" || zones.contains_key(name.as_str()) {
            checker.problem(&path, format!("{name:?} is already a zone"));
            continue;
        }
        let Some(target) = checker.string(target, &path) else {
            continue;
        };
        match zones.get(target) {
            Some(&index) => aliases.push(AliasSpec {
                name: name.clone(),
                target: index,
            }),
            None => checker.problem(&path, format!("no zone is named {target:?}")),
        }
    }
    (aliases.len() == map.len()).then_some(aliases)
}

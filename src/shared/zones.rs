//! The pool's zone names that both planes know: the seven continents
//! (MaxMind's continent codes, the pool's zone labels, their names) and
//! the one exception to "a country's zone is its ISO code": Great Britain,
//! `GB` in GeoIP, is the pool's `uk` (and `gb` an alias of it).
//!
//! The DNS daemon maps a located client to a zone with these; the control
//! plane builds its zone tree (`control::zone_tree`) and snapshots from
//! them. The rules themselves are in zones/README.md ("Names").

/// The seven continents of MaxMind's `continent.code`, which are also the
/// pool's continent zones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Continent {
    Africa,
    Antarctica,
    Asia,
    Europe,
    NorthAmerica,
    Oceania,
    SouthAmerica,
}

impl Continent {
    pub const ALL: [Continent; 7] = [
        Continent::Africa,
        Continent::Antarctica,
        Continent::Asia,
        Continent::Europe,
        Continent::NorthAmerica,
        Continent::Oceania,
        Continent::SouthAmerica,
    ];

    /// MaxMind's two-letter continent code ("EU"), in any case.
    pub fn from_code(code: &[u8]) -> Option<Continent> {
        let upper = match code {
            [a, b] => [a.to_ascii_uppercase(), b.to_ascii_uppercase()],
            _ => return None,
        };
        Continent::ALL
            .into_iter()
            .find(|continent| continent.code().as_bytes() == upper)
    }

    /// MaxMind's two-letter continent code.
    pub fn code(self) -> &'static str {
        match self {
            Continent::Africa => "AF",
            Continent::Antarctica => "AN",
            Continent::Asia => "AS",
            Continent::Europe => "EU",
            Continent::NorthAmerica => "NA",
            Continent::Oceania => "OC",
            Continent::SouthAmerica => "SA",
        }
    }

    /// The continent with this zone label.
    pub fn from_zone_name(name: &str) -> Option<Continent> {
        Continent::ALL
            .into_iter()
            .find(|continent| continent.zone_name() == name)
    }

    /// Its English name, for pages.
    pub fn name(self) -> &'static str {
        match self {
            Continent::Africa => "Africa",
            Continent::Antarctica => "Antarctica",
            Continent::Asia => "Asia",
            Continent::Europe => "Europe",
            Continent::NorthAmerica => "North America",
            Continent::Oceania => "Oceania",
            Continent::SouthAmerica => "South America",
        }
    }

    /// The pool's zone label for this continent.
    pub fn zone_name(self) -> &'static str {
        match self {
            Continent::Africa => "africa",
            Continent::Antarctica => "antarctica",
            Continent::Asia => "asia",
            Continent::Europe => "europe",
            Continent::NorthAmerica => "north-america",
            Continent::Oceania => "oceania",
            Continent::SouthAmerica => "south-america",
        }
    }
}

/// GeoIP's (ISO 3166-1) code for Great Britain, lowercase.
pub const GREAT_BRITAIN_CODE: &str = "gb";

/// The pool's zone for Great Britain.
pub const GREAT_BRITAIN_ZONE: &str = "uk";

/// The pool's zone label of a lowercase ISO country code: `gb` is `uk`,
/// every other code is its own label.
pub fn country_zone_label(code: &str) -> &str {
    if code == GREAT_BRITAIN_CODE {
        GREAT_BRITAIN_ZONE
    } else {
        code
    }
}

/// The aliases a snapshot carries for its country zones: `gb` -> `uk`
/// when there is a `uk` zone (so a client asking for `gb.pool.ntp.org`,
/// or located in GeoIP's `GB`, is served the `uk` zone).
pub fn country_aliases(has_uk: bool) -> Option<(&'static str, &'static str)> {
    has_uk.then_some((GREAT_BRITAIN_CODE, GREAT_BRITAIN_ZONE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continents_and_great_britain() {
        for continent in Continent::ALL {
            assert_eq!(
                Continent::from_code(continent.code().as_bytes()),
                Some(continent)
            );
            assert_eq!(
                Continent::from_zone_name(continent.zone_name()),
                Some(continent)
            );
        }
        assert_eq!(Continent::from_code(b"eu"), Some(Continent::Europe));
        assert_eq!(Continent::from_code(b"XX"), None);
        assert_eq!(Continent::from_code(b"EUR"), None);
        assert_eq!(Continent::NorthAmerica.zone_name(), "north-america");
        assert_eq!(Continent::NorthAmerica.name(), "North America");
        assert_eq!(country_zone_label("gb"), "uk");
        assert_eq!(country_zone_label("de"), "de");
        assert_eq!(country_aliases(true), Some(("gb", "uk")));
        assert_eq!(country_aliases(false), None);
    }
}

//! The pool's zone hierarchy: `@` (global) > continents > countries.
//!
//! Static data, shared by the web pages, the server-zone assignment and
//! the zone builder. The continents are `shared::zones::Continent`; the
//! countries are listed here. Country zones are ISO 3166-1 alpha-2 codes
//! in lower case, except that the pool names Great Britain `uk` (GeoIP
//! `GB`; `gb` is accepted as an alias of `uk`: `shared::zones`).

use crate::shared::zones::{self, Continent};

/// "cc CONTINENT Name" per line.
const COUNTRIES: &str = "\
ad EU Andorra
ae AS United Arab Emirates
af AS Afghanistan
ag NA Antigua and Barbuda
ai NA Anguilla
al EU Albania
am AS Armenia
ao AF Angola
aq AN Antarctica
ar SA Argentina
as OC American Samoa
at EU Austria
au OC Australia
aw NA Aruba
ax EU Aland Islands
az AS Azerbaijan
ba EU Bosnia and Herzegovina
bb NA Barbados
bd AS Bangladesh
be EU Belgium
bf AF Burkina Faso
bg EU Bulgaria
bh AS Bahrain
bi AF Burundi
bj AF Benin
bl NA Saint Barthelemy
bm NA Bermuda
bn AS Brunei
bo SA Bolivia
bq NA Caribbean Netherlands
br SA Brazil
bs NA Bahamas
bt AS Bhutan
bv AN Bouvet Island
bw AF Botswana
by EU Belarus
bz NA Belize
ca NA Canada
cc AS Cocos (Keeling) Islands
cd AF DR Congo
cf AF Central African Republic
cg AF Congo
ch EU Switzerland
ci AF Cote d'Ivoire
ck OC Cook Islands
cl SA Chile
cm AF Cameroon
cn AS China
co SA Colombia
cr NA Costa Rica
cu NA Cuba
cv AF Cabo Verde
cw NA Curacao
cx AS Christmas Island
cy EU Cyprus
cz EU Czechia
de EU Germany
dj AF Djibouti
dk EU Denmark
dm NA Dominica
do NA Dominican Republic
dz AF Algeria
ec SA Ecuador
ee EU Estonia
eg AF Egypt
eh AF Western Sahara
er AF Eritrea
es EU Spain
et AF Ethiopia
fi EU Finland
fj OC Fiji
fk SA Falkland Islands
fm OC Micronesia
fo EU Faroe Islands
fr EU France
ga AF Gabon
gd NA Grenada
ge AS Georgia
gf SA French Guiana
gg EU Guernsey
gh AF Ghana
gi EU Gibraltar
gl NA Greenland
gm AF Gambia
gn AF Guinea
gp NA Guadeloupe
gq AF Equatorial Guinea
gr EU Greece
gs AN South Georgia
gt NA Guatemala
gu OC Guam
gw AF Guinea-Bissau
gy SA Guyana
hk AS Hong Kong
hm AN Heard Island and McDonald Islands
hn NA Honduras
hr EU Croatia
ht NA Haiti
hu EU Hungary
id AS Indonesia
ie EU Ireland
il AS Israel
im EU Isle of Man
in AS India
io AS British Indian Ocean Territory
iq AS Iraq
ir AS Iran
is EU Iceland
it EU Italy
je EU Jersey
jm NA Jamaica
jo AS Jordan
jp AS Japan
ke AF Kenya
kg AS Kyrgyzstan
kh AS Cambodia
ki OC Kiribati
km AF Comoros
kn NA Saint Kitts and Nevis
kp AS North Korea
kr AS South Korea
kw AS Kuwait
ky NA Cayman Islands
kz AS Kazakhstan
la AS Laos
lb AS Lebanon
lc NA Saint Lucia
li EU Liechtenstein
lk AS Sri Lanka
lr AF Liberia
ls AF Lesotho
lt EU Lithuania
lu EU Luxembourg
lv EU Latvia
ly AF Libya
ma AF Morocco
mc EU Monaco
md EU Moldova
me EU Montenegro
mf NA Saint Martin
mg AF Madagascar
mh OC Marshall Islands
mk EU North Macedonia
ml AF Mali
mm AS Myanmar
mn AS Mongolia
mo AS Macao
mp OC Northern Mariana Islands
mq NA Martinique
mr AF Mauritania
ms NA Montserrat
mt EU Malta
mu AF Mauritius
mv AS Maldives
mw AF Malawi
mx NA Mexico
my AS Malaysia
mz AF Mozambique
na AF Namibia
nc OC New Caledonia
ne AF Niger
nf OC Norfolk Island
ng AF Nigeria
ni NA Nicaragua
nl EU Netherlands
no EU Norway
np AS Nepal
nr OC Nauru
nu OC Niue
nz OC New Zealand
om AS Oman
pa NA Panama
pe SA Peru
pf OC French Polynesia
pg OC Papua New Guinea
ph AS Philippines
pk AS Pakistan
pl EU Poland
pm NA Saint Pierre and Miquelon
pn OC Pitcairn
pr NA Puerto Rico
ps AS Palestine
pt EU Portugal
pw OC Palau
py SA Paraguay
qa AS Qatar
re AF Reunion
ro EU Romania
rs EU Serbia
ru EU Russia
rw AF Rwanda
sa AS Saudi Arabia
sb OC Solomon Islands
sc AF Seychelles
sd AF Sudan
se EU Sweden
sg AS Singapore
sh AF Saint Helena
si EU Slovenia
sj EU Svalbard and Jan Mayen
sk EU Slovakia
sl AF Sierra Leone
sm EU San Marino
sn AF Senegal
so AF Somalia
sr SA Suriname
ss AF South Sudan
st AF Sao Tome and Principe
sv NA El Salvador
sx NA Sint Maarten
sy AS Syria
sz AF Eswatini
tc NA Turks and Caicos Islands
td AF Chad
tf AN French Southern Territories
tg AF Togo
th AS Thailand
tj AS Tajikistan
tk OC Tokelau
tl AS Timor-Leste
tm AS Turkmenistan
tn AF Tunisia
to OC Tonga
tr AS Turkey
tt NA Trinidad and Tobago
tv OC Tuvalu
tw AS Taiwan
tz AF Tanzania
ua EU Ukraine
ug AF Uganda
uk EU United Kingdom
um OC United States Minor Outlying Islands
us NA United States
uy SA Uruguay
uz AS Uzbekistan
va EU Vatican City
vc NA Saint Vincent and the Grenadines
ve SA Venezuela
vg NA British Virgin Islands
vi NA U.S. Virgin Islands
vn AS Vietnam
vu OC Vanuatu
wf OC Wallis and Futuna
ws OC Samoa
xk EU Kosovo
ye AS Yemen
yt AF Mayotte
za AF South Africa
zm AF Zambia
zw AF Zimbabwe";

/// A zone as the pages show it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ZoneInfo {
    /// DNS label: "@", "europe", "de".
    pub zone: &'static str,
    pub name: &'static str,
    /// The parent zone; None for "@".
    pub parent: Option<&'static str>,
}

fn countries() -> impl Iterator<Item = ZoneInfo> {
    COUNTRIES.lines().filter_map(|line| {
        let mut parts = line.splitn(3, ' ');
        let zone = parts.next()?;
        let code = parts.next()?;
        let name = parts.next()?;
        let continent = Continent::from_code(code.as_bytes())?;
        Some(ZoneInfo {
            zone,
            name,
            parent: Some(continent.zone_name()),
        })
    })
}

/// Maps a name a user may type (any case, `gb`, `global`) to the pool's zone.
pub fn canonical(name: &str) -> Option<&'static str> {
    let name = name.trim().to_ascii_lowercase();
    let name = match name.as_str() {
        "global" | "" => "@",
        other => zones::country_zone_label(other),
    };
    lookup(name).map(|z| z.zone)
}

/// Finds a zone by its exact label.
pub fn lookup(zone: &str) -> Option<ZoneInfo> {
    if zone == "@" {
        return Some(ZoneInfo {
            zone: "@",
            name: "Global",
            parent: None,
        });
    }
    if let Some(continent) = Continent::from_zone_name(zone) {
        return Some(ZoneInfo {
            zone: continent.zone_name(),
            name: continent.name(),
            parent: Some("@"),
        });
    }
    countries().find(|c| c.zone == zone)
}

/// True for country zones (the ones a server is assigned to).
pub fn is_country(zone: &str) -> bool {
    countries().any(|c| c.zone == zone)
}

/// The zone and all its ancestors, most specific first: de, europe, @.
pub fn with_parents(zone: &str) -> Vec<&'static str> {
    let mut out = Vec::new();
    let mut current = lookup(zone);
    while let Some(z) = current {
        out.push(z.zone);
        current = z.parent.and_then(lookup);
    }
    out
}

/// Direct children of a zone, sorted by label.
pub fn children(zone: &str) -> Vec<ZoneInfo> {
    if zone == "@" {
        return Continent::ALL
            .iter()
            .filter_map(|continent| lookup(continent.zone_name()))
            .collect();
    }
    let mut kids: Vec<ZoneInfo> = countries().filter(|c| c.parent == Some(zone)).collect();
    kids.sort_by(|a, b| a.zone.cmp(b.zone));
    kids
}

/// All country zones, sorted by name, for the zone choice on forms.
pub fn all_countries() -> Vec<ZoneInfo> {
    let mut all: Vec<ZoneInfo> = countries().collect();
    all.sort_by(|a, b| a.name.cmp(b.name));
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hierarchy() {
        assert_eq!(with_parents("de"), vec!["de", "europe", "@"]);
        assert_eq!(with_parents("europe"), vec!["europe", "@"]);
        assert_eq!(with_parents("@"), vec!["@"]);
        assert!(with_parents("zz").is_empty());
        assert_eq!(canonical("GB"), Some("uk"));
        assert_eq!(canonical("global"), Some("@"));
        assert_eq!(children("@").len(), 7);
        assert!(children("europe").iter().any(|z| z.zone == "de"));
        assert!(all_countries().len() > 240);
        // Every country line parsed (a typo in a continent code drops a line).
        assert_eq!(countries().count(), COUNTRIES.lines().count());
    }
}

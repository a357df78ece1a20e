//! The price snapshot every Spotwright program reads: on-demand USD per
//! instance-hour for each EC2 instance type of one region, and Spot prices
//! derived from them.
//!
//! The on-demand figures are embedded from `api/data/prices-us-east-1.csv`,
//! which `scripts/generate-price-snapshot` writes from the AWS public price
//! list (Linux, shared tenancy); regenerate it rather than editing it.
//!
//! # The Spot discount model
//! Real Spot prices move and the local EC2 emulator has none worth using, so
//! a Spot price here is a deterministic model, not market data:
//! `spot = on_demand × (1 − discount)`, where the discount depends on the
//! instance generation (the digit after the category letters: `m5` → 5,
//! `c7i` → 7, `hpc7g` → 7):
//!
//! | generation | discount |
//! | --- | --- |
//! | 5 or older | 70% |
//! | 6 | 65% |
//! | 7 | 60% |
//! | 8 or newer | 55% |
//! | none (such as `u-12tb1`) | 60% |
//!
//! Accelerated categories (`p`, `g`, `gr`, `inf`, `trn`, `dl`, `f`, `vt`)
//! get 5 points less, since their Spot pools are tighter. Older generations
//! have more idle capacity and so deeper discounts, which is what the Spot
//! price history shows on average. Every discount lies in 50–70%, so a Spot
//! price is always below the on-demand one.

use std::sync::OnceLock;

use crate::keys::CapacityType;

/// The embedded snapshot, as generated.
pub const SNAPSHOT: &str = include_str!("../data/prices-us-east-1.csv");

const HEADER: &str = "instance_type,on_demand_usd_per_hour";
const REGION_PREFIX: &str = "# region:";
/// Categories whose Spot discount is 5 points smaller (GPUs and other accelerators).
pub const ACCELERATED_CATEGORIES: [&str; 8] = ["p", "g", "gr", "inf", "trn", "dl", "f", "vt"];

/// Why a price snapshot cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PriceError {
    #[error("price snapshot line {line}: expected `<instance-type>,<usd-per-hour>`, got {text:?}")]
    Malformed { line: usize, text: String },
    #[error("price snapshot line {line}: {value:?} is not a positive price")]
    BadPrice { line: usize, value: String },
    #[error("price snapshot line {line}: {instance_type} is listed twice")]
    Duplicate { line: usize, instance_type: String },
    #[error("price snapshot names no region (a `# region: <name>` line)")]
    NoRegion,
    #[error("price snapshot holds no prices")]
    Empty,
}

/// On-demand prices per instance type, and the Spot prices derived from them.
#[derive(Clone, Debug, PartialEq)]
pub struct PriceCatalog {
    region: String,
    /// (on-demand, Spot) per type; foldhash, as prices are looked up often.
    prices: foldhash::HashMap<String, (f64, f64)>,
}

impl PriceCatalog {
    /// The snapshot embedded in this crate, parsed on first use.
    pub fn embedded() -> Result<&'static PriceCatalog, PriceError> {
        static CATALOG: OnceLock<Result<PriceCatalog, PriceError>> = OnceLock::new();
        CATALOG
            .get_or_init(|| PriceCatalog::parse(SNAPSHOT))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Parses the snapshot format: `#` comment lines (one of them
    /// `# region: <name>`), the header `instance_type,on_demand_usd_per_hour`,
    /// then one `<instance-type>,<usd-per-hour>` line per type.
    pub fn parse(text: &str) -> Result<Self, PriceError> {
        let mut region = None;
        let mut prices = foldhash::HashMap::default();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let trimmed = raw.trim();
            if let Some(name) = trimmed.strip_prefix(REGION_PREFIX) {
                region = Some(name.trim().to_owned());
                continue;
            }
            if trimmed.is_empty() || trimmed.starts_with('#') || trimmed == HEADER {
                continue;
            }
            let malformed = || PriceError::Malformed {
                line,
                text: trimmed.to_owned(),
            };
            let (instance_type, value) = trimmed.split_once(',').ok_or_else(malformed)?;
            let instance_type = instance_type.trim();
            if instance_type.is_empty() || value.contains(',') {
                return Err(malformed());
            }
            let price = value
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|p| p.is_finite() && *p > 0.0)
                .ok_or_else(|| PriceError::BadPrice {
                    line,
                    value: value.trim().to_owned(),
                })?;
            let spot = price * (1.0 - spot_discount(instance_type));
            if prices
                .insert(instance_type.to_owned(), (price, spot))
                .is_some()
            {
                return Err(PriceError::Duplicate {
                    line,
                    instance_type: instance_type.to_owned(),
                });
            }
        }
        let region = region
            .filter(|r| !r.is_empty())
            .ok_or(PriceError::NoRegion)?;
        if prices.is_empty() {
            return Err(PriceError::Empty);
        }
        Ok(PriceCatalog { region, prices })
    }

    /// The region the prices are for, such as `us-east-1`.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// Number of instance types priced.
    pub fn len(&self) -> usize {
        self.prices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.prices.is_empty()
    }

    /// USD per hour of one instance of `instance_type` on `capacity_type`;
    /// `None` for a type the snapshot does not know.
    pub fn price(&self, instance_type: &str, capacity_type: CapacityType) -> Option<f64> {
        let (on_demand, spot) = *self.prices.get(instance_type)?;
        Some(match capacity_type {
            CapacityType::OnDemand => on_demand,
            CapacityType::Spot => spot,
        })
    }

    /// Every priced instance type with its on-demand price, in no order.
    pub fn on_demand_prices(&self) -> impl Iterator<Item = (&str, f64)> {
        self.prices.iter().map(|(t, (p, _))| (t.as_str(), *p))
    }
}

/// The parts of an instance type name the discount model reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InstanceTypeName<'a> {
    /// Everything before the dot: `m5`, `c7i-flex`, `p6-b200`.
    pub family: &'a str,
    /// The leading letters: `m`, `c`, `hpc`, `inf`.
    pub category: &'a str,
    /// The digits right after the category, when there are any.
    pub generation: Option<u32>,
    /// Everything after the dot: `large`, `metal`.
    pub size: &'a str,
}

impl<'a> InstanceTypeName<'a> {
    pub fn parse(instance_type: &'a str) -> Self {
        let (family, size) = instance_type.split_once('.').unwrap_or((instance_type, ""));
        let letters = family.bytes().take_while(u8::is_ascii_lowercase).count();
        let (category, rest) = family.split_at(letters);
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let generation = rest[..digits].parse().ok();
        InstanceTypeName {
            family,
            category,
            generation,
            size,
        }
    }
}

/// The share of the on-demand price a Spot instance saves under the model
/// in this module's documentation; always in `0.5..=0.7`.
pub fn spot_discount(instance_type: &str) -> f64 {
    let name = InstanceTypeName::parse(instance_type);
    let by_generation = match name.generation {
        Some(0..=5) => 0.70,
        Some(6) => 0.65,
        Some(7) => 0.60,
        Some(_) => 0.55,
        None => 0.60,
    };
    if ACCELERATED_CATEGORIES.contains(&name.category) {
        by_generation - 0.05
    } else {
        by_generation
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn the_embedded_snapshot_parses_and_knows_common_types() {
        let catalog = PriceCatalog::embedded().expect("the embedded snapshot parses");
        assert_eq!(catalog.region(), "us-east-1");
        assert!(catalog.len() > 1000, "{} types", catalog.len());
        assert_eq!(
            catalog.price("m5.large", CapacityType::OnDemand),
            Some(0.096)
        );
        assert_eq!(
            catalog.price("c5.large", CapacityType::OnDemand),
            Some(0.085)
        );
        assert_eq!(
            catalog.price("m6i.xlarge", CapacityType::OnDemand),
            Some(0.192)
        );
    }

    #[test]
    fn spot_prices_follow_the_model() {
        let catalog = PriceCatalog::embedded().unwrap();
        let spot = catalog.price("m5.large", CapacityType::Spot).unwrap();
        assert!(close(spot, 0.096 * 0.30), "{spot}");
        let spot = catalog.price("m6i.xlarge", CapacityType::Spot).unwrap();
        assert!(close(spot, 0.192 * 0.35), "{spot}");
        let spot = catalog.price("g5.xlarge", CapacityType::Spot).unwrap();
        let od = catalog.price("g5.xlarge", CapacityType::OnDemand).unwrap();
        assert!(close(spot, od * 0.35), "{spot} vs {od}");
    }

    #[test]
    fn spot_is_cheaper_than_on_demand_for_every_type() {
        let catalog = PriceCatalog::embedded().unwrap();
        for (instance_type, on_demand) in catalog.on_demand_prices() {
            let spot = catalog.price(instance_type, CapacityType::Spot).unwrap();
            assert!(
                spot > 0.0 && spot < on_demand,
                "{instance_type}: {spot} vs {on_demand}"
            );
            let discount = spot_discount(instance_type);
            assert!((0.5..=0.7).contains(&discount), "{instance_type}");
        }
    }

    #[test]
    fn unknown_types_have_no_price() {
        let catalog = PriceCatalog::embedded().unwrap();
        assert_eq!(catalog.price("m5.huge", CapacityType::OnDemand), None);
        assert_eq!(catalog.price("", CapacityType::Spot), None);
    }

    #[test]
    fn instance_type_names_split_into_their_parts() {
        let m5 = InstanceTypeName::parse("m5.large");
        assert_eq!(
            (m5.family, m5.category, m5.generation, m5.size),
            ("m5", "m", Some(5), "large")
        );
        let hpc = InstanceTypeName::parse("hpc7g.16xlarge");
        assert_eq!((hpc.category, hpc.generation), ("hpc", Some(7)));
        let flex = InstanceTypeName::parse("c7i-flex.large");
        assert_eq!((flex.family, flex.generation), ("c7i-flex", Some(7)));
        let u = InstanceTypeName::parse("u-12tb1.112xlarge");
        assert_eq!((u.category, u.generation), ("u", None));
        assert!(close(spot_discount("u-12tb1.112xlarge"), 0.60));
        assert!(close(spot_discount("m8g.large"), 0.55));
        assert!(close(spot_discount("p5.48xlarge"), 0.65));
        assert!(close(spot_discount("t3.micro"), 0.70));
    }

    #[test]
    fn bad_snapshots_are_typed_errors() {
        let ok = "# region: r\ninstance_type,on_demand_usd_per_hour\nm5.large,0.096\n";
        assert_eq!(PriceCatalog::parse(ok).unwrap().len(), 1);
        assert_eq!(
            PriceCatalog::parse("# region: r\nm5.large 0.096\n"),
            Err(PriceError::Malformed {
                line: 2,
                text: "m5.large 0.096".into()
            })
        );
        assert_eq!(
            PriceCatalog::parse("# region: r\nm5.large,free\n"),
            Err(PriceError::BadPrice {
                line: 2,
                value: "free".into()
            })
        );
        assert!(matches!(
            PriceCatalog::parse("# region: r\nm5.large,-1\n"),
            Err(PriceError::BadPrice { .. })
        ));
        assert!(matches!(
            PriceCatalog::parse("# region: r\nm5.large,NaN\n"),
            Err(PriceError::BadPrice { .. })
        ));
        assert!(matches!(
            PriceCatalog::parse("# region: r\nm5.large,1,2\n"),
            Err(PriceError::Malformed { .. })
        ));
        assert_eq!(
            PriceCatalog::parse("# region: r\na.b,1\na.b,2\n"),
            Err(PriceError::Duplicate {
                line: 3,
                instance_type: "a.b".into()
            })
        );
        assert_eq!(
            PriceCatalog::parse("m5.large,1\n"),
            Err(PriceError::NoRegion)
        );
        assert_eq!(
            PriceCatalog::parse("# region: r\ninstance_type,on_demand_usd_per_hour\n"),
            Err(PriceError::Empty)
        );
    }

    #[test]
    fn errors_are_one_line() {
        let err = PriceCatalog::parse("# region: r\nx\n").unwrap_err();
        assert_eq!(err.to_string().lines().count(), 1);
    }
}

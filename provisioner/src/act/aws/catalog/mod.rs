//! The instance catalog: what EC2 sells here, where, and at what price, as
//! the solver's [`InstanceType`]s.
//!
//! [`convert`] holds the pure conversion from SDK output types; this module
//! makes the calls and keeps the latest result in a [`Catalog`].

pub mod convert;

use std::collections::HashMap;
use std::time::Instant;

use aws_sdk_ec2::types::{LocationType, RiProductDescription};
use spotwright_api::prices::PriceCatalog;
use spotwright_solver::model::InstanceType;

use super::error::{sdk_error, SdkCallError};
use crate::model::launch::unavailable::UnavailableOfferings;
use crate::Error;
pub use convert::{Arch, PriceBook, TypeFacts};

/// The Spot price history's product description for Linux instances in a VPC.
pub const LINUX_PRODUCT_DESCRIPTION: &str = "Linux/UNIX";

/// Where Spot prices come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpotPrices {
    /// EC2's Spot price history (DescribeSpotPriceHistory), the snapshot's
    /// discount model for any type and zone it has no price for.
    History,
    /// The snapshot's discount model alone (`--spot-price-history false`):
    /// for a role without `ec2:DescribeSpotPriceHistory`, or an emulator
    /// whose history is one flat figure.
    Modeled,
}

/// The latest instance types, refreshed as a whole.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    types: Vec<InstanceType>,
    index: HashMap<String, usize>,
    refreshed_at: Option<Instant>,
}

impl Catalog {
    pub fn new(types: Vec<InstanceType>, now: Instant) -> Self {
        let mut catalog = Catalog::default();
        catalog.replace(types, now);
        catalog
    }

    /// Swaps in a freshly fetched list.
    pub fn replace(&mut self, types: Vec<InstanceType>, now: Instant) {
        self.index = types
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        self.types = types;
        self.refreshed_at = Some(now);
    }

    /// Every instance type, with all offerings marked available.
    pub fn instance_types(&self) -> &[InstanceType] {
        &self.types
    }

    pub fn get(&self, name: &str) -> Option<&InstanceType> {
        self.index.get(name).map(|&i| &self.types[i])
    }

    /// When [`Catalog::replace`] last ran; `None` before the first fetch.
    pub fn refreshed_at(&self) -> Option<Instant> {
        self.refreshed_at
    }

    /// What the solver gets: every type, with offerings a recent capacity
    /// error marked unavailable (`available: false`).
    pub fn solver_input(
        &self,
        unavailable: &UnavailableOfferings,
        now: Instant,
    ) -> Vec<InstanceType> {
        let mut types = self.types.clone();
        for instance_type in &mut types {
            for offering in &mut instance_type.offerings {
                offering.available = !unavailable.is_unavailable(
                    offering.capacity_type,
                    &instance_type.name,
                    &offering.zone,
                    now,
                );
            }
        }
        types
    }

    /// Fetches the catalog again and swaps it in.
    pub async fn refresh(
        &mut self,
        ec2: &aws_sdk_ec2::Client,
        on_demand: &HashMap<String, f64>,
        spot_prices: SpotPrices,
        root_volume_gib: u64,
    ) -> Result<usize, Error> {
        let types = fetch_instance_types(ec2, on_demand, spot_prices, root_volume_gib).await?;
        let count = types.len();
        self.replace(types, Instant::now());
        Ok(count)
    }
}

/// Describes every instance type, where it is offered and its Spot prices,
/// and converts them. `on_demand` comes from the Pricing API (may be empty);
/// the bundled snapshot fills the gaps.
pub async fn fetch_instance_types(
    ec2: &aws_sdk_ec2::Client,
    on_demand: &HashMap<String, f64>,
    spot_prices: SpotPrices,
    root_volume_gib: u64,
) -> Result<Vec<InstanceType>, Error> {
    // Three independent reads, each paginated: at once, not one after another.
    let spot = async {
        match spot_prices {
            SpotPrices::History => describe_spot_prices(ec2).await,
            SpotPrices::Modeled => Ok(Vec::new()),
        }
    };
    let (infos, offerings, spot) = futures::try_join!(
        describe_instance_types(ec2),
        describe_zone_offerings(ec2),
        spot
    )?;
    let snapshot = PriceCatalog::embedded().ok();
    if snapshot.is_none() {
        tracing::warn!("the bundled price snapshot does not parse; using API prices only");
    }
    let prices = PriceBook {
        on_demand,
        spot: &convert::latest_spot_prices(&spot),
        snapshot,
    };
    let types = convert::instance_types(&infos, &offerings, &prices, root_volume_gib);
    if types.is_empty() {
        return Err(Error::EmptyCatalog);
    }
    Ok(types)
}

pub async fn describe_instance_types(
    ec2: &aws_sdk_ec2::Client,
) -> Result<Vec<aws_sdk_ec2::types::InstanceTypeInfo>, SdkCallError> {
    let mut pages = ec2.describe_instance_types().into_paginator().send();
    let mut infos = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(sdk_error("DescribeInstanceTypes"))?;
        infos.extend_from_slice(page.instance_types());
    }
    Ok(infos)
}

/// Which instance type is offered in which availability zone.
pub async fn describe_zone_offerings(
    ec2: &aws_sdk_ec2::Client,
) -> Result<Vec<aws_sdk_ec2::types::InstanceTypeOffering>, SdkCallError> {
    let mut pages = ec2
        .describe_instance_type_offerings()
        .location_type(LocationType::AvailabilityZone)
        .into_paginator()
        .send();
    let mut offerings = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(sdk_error("DescribeInstanceTypeOfferings"))?;
        offerings.extend_from_slice(page.instance_type_offerings());
    }
    Ok(offerings)
}

/// Current Spot prices: with a start time of now, EC2 returns the price in
/// effect for every type and zone.
pub async fn describe_spot_prices(
    ec2: &aws_sdk_ec2::Client,
) -> Result<Vec<aws_sdk_ec2::types::SpotPrice>, SdkCallError> {
    let mut pages = ec2
        .describe_spot_price_history()
        .product_descriptions(LINUX_PRODUCT_DESCRIPTION)
        .start_time(aws_sdk_ec2::primitives::DateTime::from(
            std::time::SystemTime::now(),
        ))
        .into_paginator()
        .send();
    let mut prices = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(sdk_error("DescribeSpotPriceHistory"))?;
        prices.extend(
            page.spot_price_history()
                .iter()
                .filter(|p| {
                    p.product_description()
                        .is_none_or(|d| *d == RiProductDescription::LinuxUnix)
                })
                .cloned(),
        );
    }
    Ok(prices)
}

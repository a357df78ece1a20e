//! On-demand prices from the AWS Price List API (`GetProducts`).
//!
//! Every `PriceList` entry is a JSON document carried as a string; [`parse`]
//! turns them into `instance type -> USD per hour`, counting what it has to
//! skip. moto has no Pricing API, so the callers fall back to the bundled
//! snapshot (`spotwright_api::prices::PriceCatalog::embedded()`) when
//! [`fetch_on_demand_prices`] fails.

pub mod parse;

use std::collections::HashMap;

use aws_sdk_pricing::types::{Filter, FilterType};

use super::error::{sdk_error, SdkCallError};
pub use parse::{parse_price_list, PriceDocumentError, PriceListSummary};

/// Regions that serve the Price List API; any other region asks us-east-1.
pub const PRICING_REGIONS: [&str; 3] = ["us-east-1", "eu-central-1", "ap-south-1"];

#[derive(Debug, thiserror::Error)]
pub enum PricingError {
    #[error(transparent)]
    Call(#[from] SdkCallError),
    #[error("GetProducts filter {field}: {message}")]
    Filter {
        field: &'static str,
        message: String,
    },
    #[error("GetProducts for {region} returned no usable on-demand price ({errors} malformed documents)")]
    NoPrices { region: String, errors: usize },
}

/// A Pricing client for `config`, pointed at a region that serves the API.
pub fn pricing_client(config: &aws_config::SdkConfig) -> aws_sdk_pricing::Client {
    let serves_pricing = config
        .region()
        .is_some_and(|r| PRICING_REGIONS.contains(&r.as_ref()));
    let mut builder = aws_sdk_pricing::config::Builder::from(config);
    if !serves_pricing {
        builder = builder.region(aws_sdk_pricing::config::Region::new(PRICING_REGIONS[0]));
    }
    aws_sdk_pricing::Client::from_conf(builder.build())
}

/// Linux, shared tenancy, no pre-installed software, capacity actually used
/// (not reservations): the price an instance launched by CreateFleet pays.
const FILTERS: [(&str, &str); 4] = [
    ("operatingSystem", "Linux"),
    ("tenancy", "Shared"),
    ("preInstalledSw", "NA"),
    ("capacitystatus", "Used"),
];

fn term_match(field: &'static str, value: &str) -> Result<Filter, PricingError> {
    Filter::builder()
        .r#type(FilterType::TermMatch)
        .field(field)
        .value(value)
        .build()
        .map_err(|err| PricingError::Filter {
            field,
            message: err.to_string(),
        })
}

/// Every page of `GetProducts` for EC2 instances in `region`, parsed.
pub async fn fetch_price_list(
    client: &aws_sdk_pricing::Client,
    region: &str,
) -> Result<PriceListSummary, PricingError> {
    let mut request = client
        .get_products()
        .service_code("AmazonEC2")
        .format_version("aws_v1")
        .filters(term_match("regionCode", region)?);
    for (field, value) in FILTERS {
        request = request.filters(term_match(field, value)?);
    }
    let mut pages = request.into_paginator().send();
    let mut summary = PriceListSummary::default();
    while let Some(page) = pages.next().await {
        let page = page.map_err(sdk_error("GetProducts"))?;
        summary.add_documents(page.price_list().iter().map(String::as_str));
    }
    Ok(summary)
}

/// On-demand USD per hour by instance type for `region`. Malformed
/// documents are logged and skipped; no price at all is an error, so the
/// caller keeps its previous prices or the snapshot.
pub async fn fetch_on_demand_prices(
    client: &aws_sdk_pricing::Client,
    region: &str,
) -> Result<HashMap<String, f64>, PricingError> {
    let summary = fetch_price_list(client, region).await?;
    if !summary.errors.is_empty() {
        tracing::warn!(
            region,
            malformed = summary.errors.len(),
            first = %summary.errors[0],
            "skipped malformed price list documents"
        );
    }
    if summary.prices.is_empty() {
        return Err(PricingError::NoPrices {
            region: region.to_owned(),
            errors: summary.errors.len(),
        });
    }
    Ok(summary.prices)
}

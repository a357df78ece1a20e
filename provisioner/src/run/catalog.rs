//! The instance-type catalog: loaded before anything else (without it no
//! pod can be placed), then refreshed in the background, on-demand prices
//! from the Pricing API less often.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use spotwright_api::eks::DEFAULT_ROOT_VOLUME_GIB;

use crate::act::aws::catalog::{fetch_instance_types, SpotPrices};
use crate::act::aws::pricing::fetch_on_demand_prices;
use crate::act::ec2_launcher::Ec2Launcher;
use crate::Error;

/// Where prices come from and how often the catalog is read again.
pub struct CatalogSource {
    pub pricing: Option<aws_sdk_pricing::Client>,
    pub region: String,
    pub spot_prices: SpotPrices,
    pub refresh: Duration,
    pub pricing_refresh: Duration,
}

/// Loads the first catalog into the launcher; returns the on-demand prices
/// it used, for the refresh loop.
pub async fn load(
    launcher: &Ec2Launcher,
    source: &CatalogSource,
) -> Result<HashMap<String, f64>, Error> {
    let on_demand = on_demand_prices(source).await;
    let types = fetch_instance_types(
        launcher.ec2(),
        &on_demand,
        source.spot_prices,
        DEFAULT_ROOT_VOLUME_GIB,
    )
    .await?;
    tracing::info!(
        instance_types = types.len(),
        on_demand_prices = on_demand.len(),
        region = source.region,
        spot_prices = ?source.spot_prices,
        "catalog loaded"
    );
    launcher.set_instance_types(types);
    Ok(on_demand)
}

/// Reads the catalog again every `refresh`, forever; a failed read keeps
/// the last catalog.
pub async fn refresh(
    launcher: Arc<Ec2Launcher>,
    source: CatalogSource,
    mut on_demand: HashMap<String, f64>,
) {
    let mut last_pricing = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(source.refresh).await;
        if last_pricing.elapsed() >= source.pricing_refresh {
            on_demand = on_demand_prices(&source).await;
            last_pricing = tokio::time::Instant::now();
        }
        match fetch_instance_types(
            launcher.ec2(),
            &on_demand,
            source.spot_prices,
            DEFAULT_ROOT_VOLUME_GIB,
        )
        .await
        {
            Ok(types) => launcher.set_instance_types(types),
            Err(err) => {
                tracing::warn!(error = %err, "catalog refresh failed; keeping the last one")
            }
        }
    }
}

/// On-demand prices from the Pricing API, or none (the bundled snapshot then prices everything).
async fn on_demand_prices(source: &CatalogSource) -> HashMap<String, f64> {
    let Some(client) = &source.pricing else {
        return HashMap::new();
    };
    match fetch_on_demand_prices(client, &source.region).await {
        Ok(prices) => prices,
        Err(err) => {
            tracing::warn!(error = %err, "Pricing API unavailable; using the bundled price snapshot");
            HashMap::new()
        }
    }
}

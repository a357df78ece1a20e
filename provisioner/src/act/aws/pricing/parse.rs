//! The Price List product document: `product.attributes.instanceType` and
//! `terms.OnDemand.<sku.offerTermCode>.priceDimensions.<rateCode>.pricePerUnit.USD`.

use std::collections::HashMap;

use serde_json::Value;

/// Why one `PriceList` document yielded no price.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PriceDocumentError {
    #[error("price list document {index} is not JSON: {message}")]
    NotJson { index: usize, message: String },
    #[error("price list document {index} has no product.attributes.instanceType")]
    NoInstanceType { index: usize },
    #[error("price list document {index} ({instance_type}) has no on-demand USD price")]
    NoOnDemandPrice { index: usize, instance_type: String },
    #[error("price list document {index} ({instance_type}): {value:?} is not a price")]
    BadPrice {
        index: usize,
        instance_type: String,
        value: String,
    },
}

/// What a run of `PriceList` documents held.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PriceListSummary {
    /// USD per hour by instance type; the lowest when a type is listed twice.
    pub prices: HashMap<String, f64>,
    /// Documents priced at zero (reservations, host tenancy): not a real
    /// price for an instance, so skipped without an error.
    pub zero_priced: usize,
    /// Documents that could not be read.
    pub errors: Vec<PriceDocumentError>,
    /// Documents seen so far (also numbers them in errors).
    pub documents: usize,
}

impl PriceListSummary {
    /// Reads each document, never failing as a whole.
    pub fn add_documents<'a>(&mut self, documents: impl IntoIterator<Item = &'a str>) {
        for document in documents {
            let index = self.documents;
            self.documents += 1;
            match parse_document(index, document) {
                Ok((instance_type, price)) => {
                    if price == 0.0 {
                        self.zero_priced += 1;
                        continue;
                    }
                    let slot = self.prices.entry(instance_type).or_insert(price);
                    *slot = slot.min(price);
                }
                Err(err) => self.errors.push(err),
            }
        }
    }
}

/// Parses every document of a `GetProducts` response.
pub fn parse_price_list<'a>(documents: impl IntoIterator<Item = &'a str>) -> PriceListSummary {
    let mut summary = PriceListSummary::default();
    summary.add_documents(documents);
    summary
}

/// One document's instance type and on-demand price (possibly zero).
pub fn parse_document(index: usize, document: &str) -> Result<(String, f64), PriceDocumentError> {
    let value: Value =
        serde_json::from_str(document).map_err(|err| PriceDocumentError::NotJson {
            index,
            message: err.to_string(),
        })?;
    let instance_type = value
        .pointer("/product/attributes/instanceType")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or(PriceDocumentError::NoInstanceType { index })?
        .to_owned();
    let no_price = || PriceDocumentError::NoOnDemandPrice {
        index,
        instance_type: instance_type.clone(),
    };
    let terms = value
        .pointer("/terms/OnDemand")
        .and_then(Value::as_object)
        .ok_or_else(no_price)?;
    // One term with one hourly dimension in practice; take the first USD one.
    let usd = terms
        .values()
        .filter_map(|term| term.get("priceDimensions")?.as_object())
        .flat_map(|dimensions| dimensions.values())
        .find_map(|dimension| dimension.pointer("/pricePerUnit/USD")?.as_str())
        .ok_or_else(no_price)?;
    let price = usd
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|p| p.is_finite() && *p >= 0.0)
        .ok_or_else(|| PriceDocumentError::BadPrice {
            index,
            instance_type: instance_type.clone(),
            value: usd.to_owned(),
        })?;
    Ok((instance_type, price))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn document(instance_type: &str, usd: &str) -> String {
        serde_json::json!({
            "product": {"attributes": {"instanceType": instance_type}, "sku": "S"},
            "terms": {"OnDemand": {"S.T": {"priceDimensions": {"S.T.R": {
                "unit": "Hrs", "pricePerUnit": {"USD": usd}
            }}}}}
        })
        .to_string()
    }

    #[test]
    fn reads_the_hourly_usd_price() {
        let doc = document("m5.large", "0.0960000000");
        assert_eq!(parse_document(0, &doc), Ok(("m5.large".to_owned(), 0.096)));
    }

    #[test]
    fn zero_prices_are_skipped_and_counted() {
        let docs = [
            document("m5.large", "0.0000000000"),
            document("c5.large", "0.085"),
        ];
        let summary = parse_price_list(docs.iter().map(String::as_str));
        assert_eq!(summary.zero_priced, 1);
        assert_eq!(summary.prices.len(), 1);
        assert!(summary.errors.is_empty());
    }

    #[test]
    fn a_type_listed_twice_keeps_its_lowest_price() {
        let docs = [document("m5.large", "0.2"), document("m5.large", "0.096")];
        let summary = parse_price_list(docs.iter().map(String::as_str));
        assert_eq!(summary.prices["m5.large"], 0.096);
    }

    #[test]
    fn bad_documents_are_errors_not_panics() {
        let docs = [
            "{not json".to_owned(),
            "{}".to_owned(),
            r#"{"product":{"attributes":{"instanceType":"m5.large"}}}"#.to_owned(),
            document("m5.large", "cheap"),
            document("m5.large", "-1"),
            "[]".to_owned(),
        ];
        let summary = parse_price_list(docs.iter().map(String::as_str));
        assert!(summary.prices.is_empty());
        assert_eq!(summary.errors.len(), docs.len());
        assert!(matches!(
            summary.errors[0],
            PriceDocumentError::NotJson { index: 0, .. }
        ));
        assert_eq!(
            summary.errors[1],
            PriceDocumentError::NoInstanceType { index: 1 }
        );
        assert!(matches!(
            summary.errors[2],
            PriceDocumentError::NoOnDemandPrice { .. }
        ));
        assert!(matches!(
            summary.errors[3],
            PriceDocumentError::BadPrice { .. }
        ));
        assert!(summary
            .errors
            .iter()
            .all(|e| e.to_string().lines().count() == 1));
    }
}

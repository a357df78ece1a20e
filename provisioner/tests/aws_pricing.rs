//! The Pricing client on recorded `GetProducts` responses: the parser on
//! the documents, and the SDK wiring against a local replay server.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use aws_sdk_pricing::config::{BehaviorVersion, Credentials, Region};
use spotwright_provisioner::act::aws::pricing::{
    fetch_on_demand_prices, fetch_price_list, parse_price_list, PriceDocumentError, PricingError,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn recorded(page: u32) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(format!("tests/data/pricing/get-products-page-{page}.json"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn documents(page: u32) -> Vec<String> {
    let body: serde_json::Value = serde_json::from_str(&recorded(page)).unwrap();
    body["PriceList"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn the_recorded_pages_yield_shared_linux_prices_and_count_the_rest() {
    let docs: Vec<String> = documents(1).into_iter().chain(documents(2)).collect();
    let summary = parse_price_list(docs.iter().map(String::as_str));
    assert_eq!(summary.documents, 11);
    assert_eq!(summary.prices.len(), 5, "{:?}", summary.prices);
    assert_eq!(summary.prices["m5.large"], 0.096);
    assert_eq!(summary.prices["c5.large"], 0.085);
    assert_eq!(summary.prices["m6i.xlarge"], 0.192);
    assert_eq!(summary.prices["m6g.large"], 0.077);
    assert_eq!(summary.prices["t3.micro"], 0.0104);
    // The reservation line and the host-tenancy line are priced at zero.
    assert_eq!(summary.zero_priced, 2);
    assert!(!summary.prices.contains_key("m5.xlarge"));
    assert!(!summary.prices.contains_key("c5.xlarge"));
    // No instance type, no terms, no USD, truncated JSON.
    assert_eq!(summary.errors.len(), 4, "{:?}", summary.errors);
    assert!(matches!(
        summary.errors[0],
        PriceDocumentError::NoInstanceType { index: 4 }
    ));
    assert!(
        matches!(&summary.errors[1], PriceDocumentError::NoOnDemandPrice { instance_type, .. } if instance_type == "r5.large")
    );
    assert!(
        matches!(&summary.errors[2], PriceDocumentError::NoOnDemandPrice { instance_type, .. } if instance_type == "r6i.large")
    );
    assert!(matches!(
        summary.errors[3],
        PriceDocumentError::NotJson { index: 10, .. }
    ));
}

/// One request the replay server saw.
#[derive(Clone, Debug)]
struct Seen {
    target: Option<String>,
    body: serde_json::Value,
}

/// Serves page 1 to a request without `NextToken` and page 2 to the one
/// that carries page 1's token, like the Price List API (JSON 1.1 over POST).
async fn replay_server(pages: Vec<String>) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream, pages.clone(), log.clone()));
        }
    });
    (address, seen)
}

async fn serve(mut stream: TcpStream, pages: Vec<String>, log: Arc<Mutex<Vec<Seen>>>) {
    let mut buffer = Vec::new();
    loop {
        // Read one request: headers, then Content-Length bytes of body.
        let header_end = loop {
            if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buffer[..header_end]).to_string();
        let header = |name: &str| {
            head.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_owned())
            })
        };
        let length: usize = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while buffer.len() < header_end + length {
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        }
        let body: serde_json::Value =
            serde_json::from_slice(&buffer[header_end..header_end + length]).unwrap_or_default();
        buffer.drain(..header_end + length);
        let page = if body.get("NextToken").is_some() {
            1
        } else {
            0
        };
        log.lock().unwrap().push(Seen {
            target: header("x-amz-target"),
            body,
        });
        let reply = &pages[page.min(pages.len() - 1)];
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.1\r\nx-amzn-RequestId: replay\r\nContent-Length: {}\r\n\r\n{reply}",
            reply.len()
        );
        if stream.write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
}

fn client(endpoint: &str) -> aws_sdk_pricing::Client {
    let config = aws_sdk_pricing::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new("AKIDREPLAY", "secret", None, None, "test"))
        .http_client(spotwright_provisioner::act::aws::config::http_client())
        .build();
    aws_sdk_pricing::Client::from_conf(config)
}

#[tokio::test]
async fn the_sdk_pages_through_get_products_with_the_linux_shared_filters() {
    let (endpoint, seen) = replay_server(vec![recorded(1), recorded(2)]).await;
    let prices = fetch_on_demand_prices(&client(&endpoint), "us-east-1")
        .await
        .expect("prices");
    assert_eq!(prices.len(), 5);
    assert_eq!(prices["m6g.large"], 0.077);

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    for request in &seen {
        assert_eq!(
            request.target.as_deref(),
            Some("AWSPriceListService.GetProducts")
        );
        assert_eq!(request.body["ServiceCode"], "AmazonEC2");
    }
    assert_eq!(seen[1].body["NextToken"], "Q2hlY2twb2ludDogcGFnZSAy");
    let filters: Vec<(String, String, String)> = seen[0].body["Filters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let s = |k: &str| f[k].as_str().unwrap_or_default().to_owned();
            (s("Type"), s("Field"), s("Value"))
        })
        .collect();
    for (field, value) in [
        ("regionCode", "us-east-1"),
        ("operatingSystem", "Linux"),
        ("tenancy", "Shared"),
        ("preInstalledSw", "NA"),
        ("capacitystatus", "Used"),
    ] {
        assert!(
            filters.contains(&("TERM_MATCH".into(), field.into(), value.into())),
            "{field}={value} missing from {filters:?}"
        );
    }
}

#[tokio::test]
async fn a_price_list_with_nothing_usable_is_an_error_for_the_fallback() {
    let empty = r#"{"FormatVersion":"aws_v1","PriceList":["{broken"]}"#.to_owned();
    let (endpoint, _) = replay_server(vec![empty]).await;
    let client = client(&endpoint);
    let summary = fetch_price_list(&client, "us-east-1")
        .await
        .expect("one page");
    assert_eq!(summary.errors.len(), 1);
    assert!(matches!(
        fetch_on_demand_prices(&client, "us-east-1").await,
        Err(PricingError::NoPrices { errors: 1, .. })
    ));
}

#[tokio::test]
async fn a_service_error_names_the_operation() {
    // Nothing listens here: the call fails in transport.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let err = fetch_on_demand_prices(&client(&endpoint), "us-east-1")
        .await
        .expect_err("no server");
    assert!(err.to_string().starts_with("GetProducts: "), "{err}");
}

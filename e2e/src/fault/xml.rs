//! The `CreateFleetResponse` the proxy answers with.
//!
//! Element names are those aws-sdk-ec2 reads (`shape_create_fleet`,
//! `shape_create_fleet_error`, `shape_launch_template_and_overrides_response`,
//! `shape_fleet_launch_template_overrides`): `fleetId`, `errorSet`/`item`
//! with `launchTemplateAndOverrides` {`launchTemplateSpecification`
//! {`launchTemplateId`, `launchTemplateName`, `version`}, `overrides`
//! {`instanceType`, `subnetId`, `availabilityZone`}}, `lifecycle`,
//! `errorCode`, `errorMessage`; and `fleetInstanceSet`/`item`, which we copy
//! from moto's own answer untouched.

use super::fleet::FaultedOverride;

/// EC2's error code for a pool without capacity.
pub const INSUFFICIENT_CAPACITY: &str = "InsufficientInstanceCapacity";

const NAMESPACE: &str = "http://ec2.amazonaws.com/doc/2016-11-15/";

/// Escapes text for an XML element's content.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

fn element(out: &mut String, name: &str, value: Option<&str>) {
    if let Some(value) = value {
        out.push_str(&format!("<{name}>{}</{name}>", escape(value)));
    }
}

/// The message EC2 gives with `InsufficientInstanceCapacity`, worded as EC2
/// words it for the lifecycle.
pub fn error_message(over: &FaultedOverride, lifecycle: &str) -> String {
    if lifecycle == "spot" {
        return "There is no Spot capacity available that matches your request.".to_owned();
    }
    let instance_type = over
        .over
        .instance_type
        .as_deref()
        .unwrap_or("the requested");
    match over.over.availability_zone.as_deref() {
        Some(zone) => format!(
            "We currently do not have sufficient {instance_type} capacity in the Availability Zone you requested ({zone})."
        ),
        None => format!("We currently do not have sufficient {instance_type} capacity in the Availability Zone you requested."),
    }
}

/// One `errorSet` item for a faulted override. Only the override fields
/// the request named are echoed, as EC2 does.
pub fn error_item(faulted: &FaultedOverride, lifecycle: &str) -> String {
    let mut out = String::from("<item><launchTemplateAndOverrides><launchTemplateSpecification>");
    element(&mut out, "launchTemplateId", faulted.spec.id.as_deref());
    element(&mut out, "launchTemplateName", faulted.spec.name.as_deref());
    element(&mut out, "version", faulted.spec.version.as_deref());
    out.push_str("</launchTemplateSpecification><overrides>");
    element(
        &mut out,
        "instanceType",
        faulted.over.instance_type.as_deref(),
    );
    element(&mut out, "subnetId", faulted.over.subnet_id.as_deref());
    element(
        &mut out,
        "availabilityZone",
        faulted.over.availability_zone.as_deref(),
    );
    out.push_str("</overrides></launchTemplateAndOverrides>");
    element(&mut out, "lifecycle", Some(lifecycle));
    element(&mut out, "errorCode", Some(INSUFFICIENT_CAPACITY));
    element(
        &mut out,
        "errorMessage",
        Some(&error_message(faulted, lifecycle)),
    );
    out.push_str("</item>");
    out
}

/// What a `CreateFleetResponse` carries.
#[derive(Debug, Clone, Default)]
pub struct FleetResponse<'a> {
    pub request_id: &'a str,
    pub fleet_id: &'a str,
    /// Our injected errors.
    pub faulted: &'a [FaultedOverride],
    pub lifecycle: &'a str,
    /// `errorSet` items moto returned (raw XML), kept after ours.
    pub upstream_errors: &'a str,
    /// `fleetInstanceSet` items moto returned (raw XML).
    pub instances: &'a str,
}

/// Builds the whole response document.
pub fn create_fleet_response(response: &FleetResponse<'_>) -> String {
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<CreateFleetResponse xmlns=\"{NAMESPACE}\">"
    );
    element(&mut out, "requestId", Some(response.request_id));
    element(&mut out, "fleetId", Some(response.fleet_id));
    out.push_str("<errorSet>");
    for faulted in response.faulted {
        out.push_str(&error_item(faulted, response.lifecycle));
    }
    out.push_str(response.upstream_errors);
    out.push_str("</errorSet><fleetInstanceSet>");
    out.push_str(response.instances);
    out.push_str("</fleetInstanceSet></CreateFleetResponse>");
    out
}

/// The raw content of the first `<name>` element of `xml`: `Some("")` for
/// `<name/>`, `None` when absent or unclosed. Enough for moto's flat,
/// attribute-free answers, where these names never nest in themselves.
pub fn element_content<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let empty = format!("<{name}/>");
    let close = format!("</{name}>");
    let start = xml.find(&open);
    let start_empty = xml.find(&empty);
    match (start, start_empty) {
        (Some(s), e) if e.is_none_or(|e| s < e) => {
            let body = &xml[s + open.len()..];
            body.find(&close).map(|end| &body[..end])
        }
        (_, Some(_)) => Some(""),
        (_, None) => None,
    }
}

/// Reverses [`escape`] for the few entities moto emits, to read a plain
/// value such as a fleet id.
pub fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// An EC2-style error document, for requests the proxy refuses itself.
pub fn ec2_error(code: &str, message: &str, request_id: &str) -> String {
    let mut out =
        String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error>");
    element(&mut out, "Code", Some(code));
    element(&mut out, "Message", Some(message));
    out.push_str("</Error></Errors>");
    element(&mut out, "RequestID", Some(request_id));
    out.push_str("</Response>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::fleet::{LaunchTemplateSpec, Override};

    fn faulted(instance_type: &str, zone: Option<&str>) -> FaultedOverride {
        FaultedOverride {
            spec: LaunchTemplateSpec {
                id: None,
                name: Some("spotwright-default".into()),
                version: Some("$Latest".into()),
            },
            over: Override {
                config: 1,
                index: 1,
                instance_type: Some(instance_type.into()),
                subnet_id: Some("subnet-a".into()),
                availability_zone: zone.map(Into::into),
            },
        }
    }

    #[test]
    fn error_item_has_the_shape_the_sdk_reads() {
        let item = error_item(&faulted("m5.large", None), "spot");
        assert_eq!(
            item,
            "<item><launchTemplateAndOverrides><launchTemplateSpecification>\
             <launchTemplateName>spotwright-default</launchTemplateName><version>$Latest</version>\
             </launchTemplateSpecification><overrides><instanceType>m5.large</instanceType>\
             <subnetId>subnet-a</subnetId></overrides></launchTemplateAndOverrides>\
             <lifecycle>spot</lifecycle><errorCode>InsufficientInstanceCapacity</errorCode>\
             <errorMessage>There is no Spot capacity available that matches your request.</errorMessage></item>"
        );
    }

    #[test]
    fn on_demand_message_names_type_and_zone() {
        let message = error_message(&faulted("m5.large", Some("us-east-1a")), "on-demand");
        assert!(
            message.contains("sufficient m5.large capacity"),
            "{message}"
        );
        assert!(message.contains("(us-east-1a)"), "{message}");
    }

    #[test]
    fn response_merges_upstream_instances() {
        let moto = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<CreateFleetResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15\">\
            <fleetId>fleet-e76488b0-d1f1-98f4-3ce7-613966ba760e</fleetId><fleetInstanceSet><item>\
            <lifecycle>spot</lifecycle><instanceIds><item>i-a93c1b06143ba0138</item></instanceIds>\
            <instanceType>c5.large</instanceType></item></fleetInstanceSet><requestId>request-id</requestId></CreateFleetResponse>";
        let fleet_id = element_content(moto, "fleetId").map(unescape).unwrap();
        let instances = element_content(moto, "fleetInstanceSet").unwrap();
        let errors = [faulted("m5.large", None)];
        let xml = create_fleet_response(&FleetResponse {
            request_id: "req-1",
            fleet_id: &fleet_id,
            faulted: &errors,
            lifecycle: "spot",
            upstream_errors: element_content(moto, "errorSet").unwrap_or(""),
            instances,
        });
        assert!(xml.starts_with(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<CreateFleetResponse xmlns="
        ));
        assert!(xml.contains("<requestId>req-1</requestId><fleetId>fleet-e76488b0-d1f1-98f4-3ce7-613966ba760e</fleetId><errorSet><item>"));
        assert!(xml.contains("<fleetInstanceSet><item><lifecycle>spot</lifecycle><instanceIds><item>i-a93c1b06143ba0138</item>"));
        assert!(xml.ends_with("</item></fleetInstanceSet></CreateFleetResponse>"));
        assert_eq!(xml.matches("<errorCode>").count(), 1);
    }

    #[test]
    fn all_faulted_response_has_empty_instances() {
        let errors = [faulted("m5.large", None), faulted("c5.large", None)];
        let xml = create_fleet_response(&FleetResponse {
            request_id: "r",
            fleet_id: "fleet-1",
            faulted: &errors,
            lifecycle: "spot",
            ..FleetResponse::default()
        });
        assert!(xml.contains("<fleetInstanceSet></fleetInstanceSet>"));
        assert_eq!(
            xml.matches("<errorCode>InsufficientInstanceCapacity</errorCode>")
                .count(),
            2
        );
    }

    #[test]
    fn element_content_cases() {
        assert_eq!(element_content("<a><b>x</b></a>", "b"), Some("x"));
        assert_eq!(element_content("<a><b/></a>", "b"), Some(""));
        assert_eq!(element_content("<a><bc>x</bc></a>", "b"), None);
        assert_eq!(element_content("<a><b>x</a>", "b"), None);
        assert_eq!(element_content("<b/><b>x</b>", "b"), Some(""));
        assert_eq!(element_content("", "b"), None);
    }

    #[test]
    fn escapes_values() {
        assert_eq!(escape("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;&apos;");
        assert_eq!(unescape(&escape("a<b>&\"'")), "a<b>&\"'");
        let xml = ec2_error("Bad", "a < b", "r");
        assert!(xml.contains("<Message>a &lt; b</Message>"));
    }
}

//! Subnets and security groups from a NodeClass's selector terms. A
//! resource matches a term when it has the term's id, or all of the term's
//! tags (`*` matches any value); it is selected when it matches any term.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::Filter;
use spotwright_api::v1alpha1::{ResolvedSecurityGroup, ResolvedSubnet, SelectorTerm};

use super::error::{sdk_error, SdkCallError};

/// A `tag:<key>` filter, or `tag-key` when any value matches (`*`).
pub fn tag_filter(key: &str, value: &str) -> Filter {
    if value == "*" {
        Filter::builder().name("tag-key").values(key).build()
    } else {
        Filter::builder()
            .name(format!("tag:{key}"))
            .values(value)
            .build()
    }
}

/// The EC2 filters of one term (`id_filter` names the id filter, such as
/// `subnet-id`); `None` for an empty term, which must not select everything.
pub fn term_filters(term: &SelectorTerm, id_filter: &str) -> Option<Vec<Filter>> {
    let mut filters: Vec<Filter> = term.tags.iter().map(|(k, v)| tag_filter(k, v)).collect();
    if let Some(id) = &term.id {
        filters.push(Filter::builder().name(id_filter).values(id).build());
    }
    (!filters.is_empty()).then_some(filters)
}

/// Subnets selected by `terms`, by id.
pub async fn resolve_subnets(
    ec2: &aws_sdk_ec2::Client,
    terms: &[SelectorTerm],
) -> Result<Vec<ResolvedSubnet>, SdkCallError> {
    let mut found = BTreeMap::new();
    for filters in terms.iter().filter_map(|t| term_filters(t, "subnet-id")) {
        let mut pages = ec2
            .describe_subnets()
            .set_filters(Some(filters))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(sdk_error("DescribeSubnets"))?;
            for subnet in page.subnets() {
                if let (Some(id), Some(zone)) = (subnet.subnet_id(), subnet.availability_zone()) {
                    found.insert(
                        id.to_owned(),
                        ResolvedSubnet {
                            id: id.to_owned(),
                            zone: zone.to_owned(),
                            zone_id: subnet.availability_zone_id().map(str::to_owned),
                        },
                    );
                }
            }
        }
    }
    Ok(found.into_values().collect())
}

/// Security groups selected by `terms`, by id.
pub async fn resolve_security_groups(
    ec2: &aws_sdk_ec2::Client,
    terms: &[SelectorTerm],
) -> Result<Vec<ResolvedSecurityGroup>, SdkCallError> {
    let mut found = BTreeMap::new();
    for filters in terms.iter().filter_map(|t| term_filters(t, "group-id")) {
        let mut pages = ec2
            .describe_security_groups()
            .set_filters(Some(filters))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(sdk_error("DescribeSecurityGroups"))?;
            for group in page.security_groups() {
                if let Some(id) = group.group_id() {
                    found.insert(
                        id.to_owned(),
                        ResolvedSecurityGroup {
                            id: id.to_owned(),
                            name: group.group_name().map(str::to_owned),
                        },
                    );
                }
            }
        }
    }
    Ok(found.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_term_becomes_anded_filters() {
        let term = SelectorTerm {
            tags: BTreeMap::from([
                ("karpenter.sh/discovery".to_owned(), "c".to_owned()),
                ("tier".to_owned(), "*".to_owned()),
            ]),
            id: Some("subnet-1".into()),
        };
        let filters = term_filters(&term, "subnet-id").unwrap();
        let names: Vec<_> = filters.iter().filter_map(|f| f.name()).collect();
        assert_eq!(
            names,
            ["tag:karpenter.sh/discovery", "tag-key", "subnet-id"]
        );
        assert_eq!(filters[1].values(), ["tier"]);
        assert!(term_filters(&SelectorTerm::default(), "subnet-id").is_none());
    }
}

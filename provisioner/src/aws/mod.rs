//! EC2, SSM and Pricing adapters.

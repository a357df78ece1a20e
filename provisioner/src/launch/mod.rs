//! Launch planning: CreateFleet overrides, unavailable offerings.

//! What the site sells and where: the region tree (city > district >
//! neighbourhood), categories, and the item details a listing carries.
//! Plugged into the API as its [`Catalogue`], so unknown names get a 400.

use axum::http::StatusCode;
use neighborbid_axum::{Actor, ApiError, Catalogue, OpenCatalogue};
use neighborbid_core::{AuctionFilter, CreateAuction, Region, Scope, ScopeFilter};
use serde::Serialize;

/// A place in the tree: its path (`seoul/mapo/mangwon`) and display name.
#[derive(Clone, Debug, Serialize)]
pub struct Place {
    /// The region's path, as auctions and accounts store it.
    pub id: String,
    /// Its name.
    pub name: String,
    /// The places inside it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<Place>,
}

/// An id and a display name.
type Named = (&'static str, &'static str);
/// A district and its neighbourhoods.
type District = (&'static str, &'static str, &'static [Named]);

/// Seoul, three districts and their neighbourhoods (dong).
const TREE: &[(&str, &str, &[District])] = &[(
    "seoul",
    "Seoul",
    &[
        (
            "mapo",
            "Mapo-gu",
            &[
                ("mangwon", "Mangwon-dong"),
                ("hapjeong", "Hapjeong-dong"),
                ("yeonnam", "Yeonnam-dong"),
                ("seogyo", "Seogyo-dong"),
            ],
        ),
        (
            "gangnam",
            "Gangnam-gu",
            &[
                ("yeoksam", "Yeoksam-dong"),
                ("samseong", "Samseong-dong"),
                ("apgujeong", "Apgujeong-dong"),
            ],
        ),
        (
            "jongno",
            "Jongno-gu",
            &[
                ("samcheong", "Samcheong-dong"),
                ("hyehwa", "Hyehwa-dong"),
                ("sajik", "Sajik-dong"),
            ],
        ),
    ],
)];

/// Category ids and names.
pub const CATEGORIES: [(&str, &str); 8] = [
    ("electronics", "Electronics"),
    ("furniture", "Furniture"),
    ("clothing", "Clothing"),
    ("books", "Books"),
    ("sports", "Sports & outdoors"),
    ("kids", "Kids & baby"),
    ("home", "Home & kitchen"),
    ("other", "Other"),
];

/// The category of a listing that names none.
pub const DEFAULT_CATEGORY: &str = "other";

/// Item conditions: new, or used graded S (like new) to C (worn).
pub const CONDITIONS: [(&str, &str); 5] = [
    ("new", "New"),
    ("s", "Used: S, like new"),
    ("a", "Used: A, light wear"),
    ("b", "Used: B, visible wear"),
    ("c", "Used: C, heavy wear"),
];

/// Who pays for shipping.
pub const SHIPPING: [(&str, &str); 2] = [("seller", "Seller pays"), ("buyer", "Buyer pays")];

/// The attribute names a listing carries.
pub const CONDITION: &str = "condition";
/// See [`CONDITION`].
pub const SHIPPING_PAYER: &str = "shipping";

/// The region tree.
pub fn regions() -> Vec<Place> {
    TREE.iter()
        .map(|(city, city_name, districts)| Place {
            id: (*city).to_owned(),
            name: (*city_name).to_owned(),
            children: districts
                .iter()
                .map(|(district, district_name, hoods)| Place {
                    id: format!("{city}/{district}"),
                    name: (*district_name).to_owned(),
                    children: hoods
                        .iter()
                        .map(|(hood, hood_name)| Place {
                            id: format!("{city}/{district}/{hood}"),
                            name: (*hood_name).to_owned(),
                            children: vec![],
                        })
                        .collect(),
                })
                .collect(),
        })
        .collect()
}

/// Every neighbourhood's path: where users live and local auctions are.
pub fn neighbourhoods() -> Vec<String> {
    let mut found = Vec::new();
    for city in regions() {
        for district in city.children {
            found.extend(district.children.into_iter().map(|hood| hood.id));
        }
    }
    found
}

/// Whether `path` names a city, district or neighbourhood.
pub fn is_region(path: &str) -> bool {
    neighbourhoods()
        .iter()
        .any(|hood| Region::new(path).contains(&Region::new(hood.as_str())))
}

/// The catalogue's rules for the API.
#[derive(Clone, Copy, Debug, Default)]
pub struct SiteCatalogue;

fn bad(code: &str, message: &str) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, code, message)
}

fn ids(list: &[(&str, &str)]) -> Vec<String> {
    list.iter().map(|(id, _)| (*id).to_owned()).collect()
}

fn check_category(category: &str) -> Result<(), ApiError> {
    if CATEGORIES.iter().any(|(id, _)| *id == category) {
        return Ok(());
    }
    Err(
        bad("unknown_category", "choose one of the listed categories")
            .with("categories", ids(&CATEGORIES)),
    )
}

impl Catalogue for SiteCatalogue {
    fn check_listing(&self, seller: &Actor, cmd: &mut CreateAuction) -> Result<(), ApiError> {
        OpenCatalogue.check_listing(seller, cmd)?;
        let listing = &mut cmd.listing;
        check_category(
            listing
                .category
                .get_or_insert_with(|| DEFAULT_CATEGORY.to_owned()),
        )?;
        // Details are optional (older clients send none), but must be known.
        let detail = |name: &str, allowed: &[(&str, &str)], code: &str, message: &str| match listing
            .attributes
            .get(name)
        {
            Some(value) if !allowed.iter().any(|(id, _)| id == value) => {
                Err(bad(code, message).with("allowed", ids(allowed)))
            }
            _ => Ok(()),
        };
        detail(
            CONDITION,
            &CONDITIONS,
            "invalid_condition",
            "condition is new, s, a, b or c",
        )?;
        detail(
            SHIPPING_PAYER,
            &SHIPPING,
            "invalid_shipping",
            "shipping is paid by the seller or the buyer",
        )?;
        if let Some(name) = listing
            .attributes
            .keys()
            .find(|name| ![CONDITION, SHIPPING_PAYER].contains(&name.as_str()))
        {
            return Err(bad(
                "unknown_attribute",
                &format!("{name:?} is not an item detail here"),
            ));
        }
        if let Scope::Local { region } = &listing.scope {
            if !neighbourhoods().iter().any(|hood| hood == region.as_str()) {
                return Err(unknown_region("a local auction is in one neighbourhood"));
            }
        }
        Ok(())
    }

    fn check_filter(&self, filter: &AuctionFilter) -> Result<(), ApiError> {
        if let Some(category) = &filter.category {
            check_category(category)?;
        }
        if let Some(ScopeFilter::Local {
            region: Some(region),
        }) = &filter.scope
        {
            if !is_region(region.as_str()) {
                return Err(unknown_region(
                    "filter by a listed city, district or neighbourhood",
                ));
            }
        }
        Ok(())
    }
}

fn unknown_region(message: &str) -> ApiError {
    bad("unknown_region", message).with("neighbourhoods", neighbourhoods())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tree_has_cities_districts_and_neighbourhoods() {
        assert!(is_region("seoul"));
        assert!(is_region("seoul/mapo"));
        assert!(is_region("seoul/mapo/mangwon"));
        assert!(!is_region("seoul/map"));
        assert!(!is_region("busan"));
        assert_eq!(neighbourhoods().len(), 10);
        assert!(neighbourhoods()
            .iter()
            .all(|hood| hood.matches('/').count() == 2));
    }
}

//! The banks and mobile-money operators the simulator knows, for bank
//! lists, account resolution and the `bank_name` of recipients. A short,
//! real subset (codes as Paystack and Flutterwave list them); an unknown
//! code is still accepted and named "Simulated Bank".

/// One bank.
pub(crate) struct Bank {
    pub id: u64,
    pub code: &'static str,
    pub name: &'static str,
    pub slug: &'static str,
    /// `nigeria`, `ghana`, `kenya` or `south africa`.
    pub country: &'static str,
    /// ISO 3166 alpha-2, as Flutterwave's `/banks/{country}` takes it.
    pub country_code: &'static str,
    pub currency: &'static str,
    /// Paystack's recipient type for it.
    pub kind: &'static str,
}

const fn bank(
    id: u64,
    code: &'static str,
    name: &'static str,
    slug: &'static str,
    country: (&'static str, &'static str, &'static str),
    kind: &'static str,
) -> Bank {
    Bank {
        id,
        code,
        name,
        slug,
        country: country.0,
        country_code: country.1,
        currency: country.2,
        kind,
    }
}

const NG: (&str, &str, &str) = ("nigeria", "NG", "NGN");
const GH: (&str, &str, &str) = ("ghana", "GH", "GHS");
const KE: (&str, &str, &str) = ("kenya", "KE", "KES");
const ZA: (&str, &str, &str) = ("south africa", "ZA", "ZAR");

pub(crate) const BANKS: &[Bank] = &[
    bank(1, "044", "Access Bank", "access-bank", NG, "nuban"),
    bank(
        3,
        "023",
        "Citibank Nigeria",
        "citibank-nigeria",
        NG,
        "nuban",
    ),
    bank(6, "050", "Ecobank Nigeria", "ecobank-nigeria", NG, "nuban"),
    bank(7, "070", "Fidelity Bank", "fidelity-bank", NG, "nuban"),
    bank(
        8,
        "011",
        "First Bank of Nigeria",
        "first-bank-of-nigeria",
        NG,
        "nuban",
    ),
    bank(
        9,
        "214",
        "First City Monument Bank",
        "first-city-monument-bank",
        NG,
        "nuban",
    ),
    bank(
        10,
        "058",
        "Guaranty Trust Bank",
        "guaranty-trust-bank",
        NG,
        "nuban",
    ),
    bank(
        16,
        "032",
        "Union Bank of Nigeria",
        "union-bank-of-nigeria",
        NG,
        "nuban",
    ),
    bank(
        17,
        "033",
        "United Bank For Africa",
        "united-bank-for-africa",
        NG,
        "nuban",
    ),
    bank(20, "035", "Wema Bank", "wema-bank", NG, "nuban"),
    bank(21, "057", "Zenith Bank", "zenith-bank", NG, "nuban"),
    bank(67, "50211", "Kuda Bank", "kuda-bank", NG, "nuban"),
    bank(
        28,
        "GCB",
        "GCB Bank Limited",
        "gcb-bank-limited",
        GH,
        "ghipss",
    ),
    bank(30, "MTN", "MTN", "mtn", GH, "mobile_money"),
    bank(31, "VOD", "Vodafone", "vodafone", GH, "mobile_money"),
    bank(32, "ATL", "AirtelTigo", "airteltigo", GH, "mobile_money"),
    bank(40, "MPESA", "M-PESA", "m-pesa", KE, "mobile_money"),
    bank(
        41,
        "MPTILL",
        "M-PESA Till",
        "m-pesa-till",
        KE,
        "mobile_money_business",
    ),
    bank(
        42,
        "01",
        "Kenya Commercial Bank",
        "kenya-commercial-bank",
        KE,
        "kepss",
    ),
    bank(
        50,
        "632005",
        "ABSA Bank Limited",
        "absa-bank-limited-za",
        ZA,
        "basa",
    ),
    bank(
        51,
        "250655",
        "First National Bank",
        "first-national-bank-za",
        ZA,
        "basa",
    ),
];

/// The name of the bank with `code`.
pub(crate) fn name(code: &str) -> &'static str {
    BANKS
        .iter()
        .find(|bank| bank.code == code)
        .map_or("Simulated Bank", |bank| bank.name)
}

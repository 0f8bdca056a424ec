//! Why a message was rejected: the sentence and the class every rejection carries.

use std::fmt;

/// Why a message was rejected: a sentence naming the field (the `spectra-error`
/// header), and its class (the `reason` label of the rejection metrics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The class of the problem.
    pub reason: Reason,
    /// A sentence a person can act on, naming the field.
    pub text: String,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Rejection {
    /// A rejection of class `reason` explained by `text`.
    pub fn new(reason: Reason, text: impl Into<String>) -> Self {
        Self {
            reason,
            text: text.into(),
        }
    }

    /// The short machine-friendly class, for metrics (`not_json`, `missing_field`…).
    pub fn class(&self) -> &'static str {
        self.reason.as_str()
    }
}

/// The class of a rejection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Empty bytes, white space, or a null value (tombstone) where a record is needed.
    Empty,
    /// Not UTF-8 text.
    NotUtf8,
    /// Not JSON.
    NotJson,
    /// JSON, but not an object.
    NotObject,
    /// A required field is absent or null.
    MissingField,
    /// An identifier is empty, too long, of the wrong type or holds control characters.
    BadIdentifier,
    /// `line_no` is not a whole number ≥ 0.
    BadLineNo,
    /// A number field is not a finite JSON number.
    BadNumber,
    /// `invoice_date` is not a real ISO date.
    BadDate,
    /// `invoice_date` is too far in the future or the past (`ingest.max_future_days`,
    /// `ingest.max_age_days`).
    DateOutOfRange,
    /// `quantity` or `net_value` beyond its bound (`ingest.max_abs_quantity`,
    /// `ingest.max_abs_net_value`).
    ValueOutOfRange,
    /// Two lines of one whole invoice share an identity.
    DuplicateLine,
    /// A whole invoice with more lines than `ingest.max_lines_per_message`.
    TooManyLines,
    /// `currency` is not a short code.
    BadCurrency,
    /// `currency` has no exchange rate into the base currency on the invoice date
    /// (`ingest.currency`).
    UnknownCurrency,
    /// Any other field of the wrong shape.
    BadField,
    /// The message's Kafka timestamp is ahead of ingest's clock by more than
    /// [`super::limits::TIMESTAMP_AHEAD_MS`].
    FutureTimestamp,
}

impl Reason {
    /// The metric label of the class.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Empty => "empty",
            Reason::NotUtf8 => "not_utf8",
            Reason::NotJson => "not_json",
            Reason::NotObject => "not_object",
            Reason::MissingField => "missing_field",
            Reason::BadIdentifier => "bad_identifier",
            Reason::BadLineNo => "bad_line_no",
            Reason::BadNumber => "bad_number",
            Reason::BadDate => "bad_date",
            Reason::DateOutOfRange => "date_out_of_range",
            Reason::ValueOutOfRange => "value_out_of_range",
            Reason::DuplicateLine => "duplicate_line",
            Reason::TooManyLines => "too_many_lines",
            Reason::BadCurrency => "bad_currency",
            Reason::UnknownCurrency => "unknown_currency",
            Reason::BadField => "bad_field",
            Reason::FutureTimestamp => "future_timestamp",
        }
    }
}

//! Kraken REST client: signing, nonces, rate limits, wire DTOs, error classes.

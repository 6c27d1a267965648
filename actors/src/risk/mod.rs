//! Risk: the pure validation pipeline (`rules`) and the RiskEngine actor (`engine`).

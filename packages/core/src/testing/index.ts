// @bmi/core/testing: in-memory drivers and the contract suites every driver must pass.
export {};

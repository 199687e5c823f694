"""The churn demo's data generator and report: demo material, kept out of the provider package."""

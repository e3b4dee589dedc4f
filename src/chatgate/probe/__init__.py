"""The probe and the deployment checks: reproduce a failing connection and name its cause."""

"""Remediation actions: a validated catalog, a runner over SSH and SNMP SET, verification and run history."""

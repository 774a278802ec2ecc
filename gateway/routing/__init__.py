"""Routing: phase of a message, business-hours calendar, the rule table and extra rules."""

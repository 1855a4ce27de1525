"""Autopilot stores: usage view, shaping buckets, incident outbox, webhook."""

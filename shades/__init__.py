"""Shades: solar geometry, weather, shading policy, relay motor driver, wall switches."""

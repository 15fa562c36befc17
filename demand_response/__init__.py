"""Demand response: shed load by overriding points on the building's own BACnet controllers while
an OpenADR event lasts, and release every override when it ends or an operator says so."""

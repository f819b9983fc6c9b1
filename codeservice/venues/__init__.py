"""Venues and service points: a venue's posted code residents scan to check in (扫码登记), and services handed
out at points with a daily quota per resident (扫码吸氧 and the like). docs/venues.md, docs/service-points.md."""

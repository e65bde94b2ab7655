"""Networks: their administration, and the NIC addresses handed out for the DHCP/DNS hook."""

"""Seed 003's createcompute message, verbatim (the SLA@SOI ISM's ten-VM loop builds it with
``'tizzy' + str(i)`` and the resourceId's suffix ``str(i)``)."""

from __future__ import annotations


def createcompute(i: int) -> str:
    return (
        'createcompute [{"class":"eu.slasoi.infrastructure.model.infrastructure.Compute","id":1,'
        '"cpu_speed":null,"boot_vol_type":null,"status":{"class":"Status","id":2},'
        '"provisionRequest":{"class":"ProvisionRequest","id":1},"imageIdentifier":"tashi",'
        '"userId":1000,"memory_size":512,"hostname":"tizzy' + str(i) + '",'
        '"provisioningSystemId":null,"links":null,"type":"occi_compute",'
        '"memory_reliability":null,"memory_speed":null,'
        '"resourceId":"a626bbb4-6c92-4f0e-a117-ae11ec502a6e' + str(i) + '","cpu_cores":1,'
        '"categories":[{"class":"Category","id":9},{"class":"Category","id":8},'
        '{"class":"Category","id":1},{"class":"Category","id":11},{"class":"Category","id":13}],'
        '"cpu_arch":null},[{"class":"eu.slasoi.infrastructure.model.Category","id":null,'
        '"scheme":"http://purl.org/occi/kind#","term":"compute","label":"Compute Resource"},'
        '{"class":"eu.slasoi.infrastructure.model.Category","id":13,'
        '"scheme":"http://provider.com/category#templates","term":"ubuntu-9.10",'
        '"label":"Ubuntu Linux 9.10"},{"class":"eu.slasoi.infrastructure.model.Category",'
        '"id":null,"scheme":"http://provider.com/category#sla","term":"gold",'
        '"label":"SLA@SOI Gold SLA"},{"class":"eu.slasoi.infrastructure.model.Category",'
        '"id":null,"scheme":"http://provider.com/category#locations","term":"ie",'
        '"label":"Ireland"}],[]]'
    )

# Three AKS regions for one Meridian cluster: VNets peered globally so peers
# replicate over private addresses, a private DNS zone with the replication
# names, and Traffic Manager (performance routing) probing /health/ready on
# each data region's public address (traffic.tf).
#
# Traffic Manager rather than Front Door: clients speak RESP over TLS, a TCP
# protocol. Front Door proxies HTTP(S) only; Traffic Manager answers DNS and
# lets the client connect straight to the region.

locals {
  tags = merge(var.tags, {
    "app.kubernetes.io/part-of" = "meridian"
    "meridian-cluster"          = var.cluster_name
  })
  data_regions = { for name, r in var.regions : name => r if !r.witness }
  # Every ordered pair of regions: a VNet peering is one-directional.
  peerings = {
    for pair in setproduct(keys(var.regions), keys(var.regions)) :
    "${pair[0]}-to-${pair[1]}" => { from = pair[0], to = pair[1] } if pair[0] != pair[1]
  }
}

resource "azurerm_resource_group" "global" {
  name     = "rg-${var.cluster_name}-global"
  location = keys(local.data_regions)[0]
  tags     = local.tags
}

data "azurerm_network_service_tags" "traffic_manager" {
  location = keys(local.data_regions)[0]
  service  = "AzureTrafficManager"
}

module "region" {
  source   = "./modules/region"
  for_each = var.regions

  cluster_name           = var.cluster_name
  location               = each.key
  cidr                   = each.value.cidr
  witness                = each.value.witness
  kubernetes_version     = var.kubernetes_version
  vm_size                = each.value.witness ? var.witness_vm_size : var.data_vm_size
  tenant_id              = var.tenant_id
  admin_group_object_ids = var.admin_group_object_ids
  client_cidrs           = var.client_cidrs
  health_prober_cidrs    = data.azurerm_network_service_tags.traffic_manager.ipv4_cidrs
  peer_cidrs             = [for name, r in var.regions : r.cidr if name != each.key]
  tags                   = local.tags
}

resource "azurerm_virtual_network_peering" "mesh" {
  for_each                     = local.peerings
  name                         = "peer-${each.key}"
  resource_group_name          = module.region[each.value.from].resource_group_name
  virtual_network_name         = module.region[each.value.from].vnet_name
  remote_virtual_network_id    = module.region[each.value.to].vnet_id
  allow_virtual_network_access = true
  allow_forwarded_traffic      = false
  allow_gateway_transit        = false
  use_remote_gateways          = false
}

# Peers dial repl.<region>.<private zone>:7381, each region's internal load
# balancer on the fixed address x.x.32.10 in its snet-ilb subnet.
resource "azurerm_private_dns_zone" "private" {
  name                = var.private_zone_name
  resource_group_name = azurerm_resource_group.global.name
  tags                = local.tags
}

resource "azurerm_private_dns_zone_virtual_network_link" "private" {
  for_each              = module.region
  name                  = "link-${each.key}"
  resource_group_name   = azurerm_resource_group.global.name
  private_dns_zone_name = azurerm_private_dns_zone.private.name
  virtual_network_id    = each.value.vnet_id
  registration_enabled  = false
  tags                  = local.tags
}

resource "azurerm_private_dns_a_record" "repl" {
  for_each            = module.region
  name                = "repl.${each.key}"
  zone_name           = azurerm_private_dns_zone.private.name
  resource_group_name = azurerm_resource_group.global.name
  ttl                 = 60
  records             = [each.value.repl_private_ip]
  tags                = local.tags
}

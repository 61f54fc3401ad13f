# Performance routing: each client resolves to the data region with the
# lowest latency among those whose /health/ready answers 200. A fenced region
# answers 503, is marked degraded after tolerated_number_of_failures probes
# and leaves the answers by itself.
resource "azurerm_traffic_manager_profile" "this" {
  name                   = "tm-${var.cluster_name}"
  resource_group_name    = azurerm_resource_group.global.name
  traffic_routing_method = "Performance"
  tags                   = local.tags

  dns_config {
    relative_name = var.traffic_manager_dns_name
    ttl           = var.dns_ttl_seconds
  }

  monitor_config {
    protocol                     = "HTTP"
    port                         = 7380
    path                         = "/health/ready"
    interval_in_seconds          = 10
    timeout_in_seconds           = 5
    tolerated_number_of_failures = 2
    expected_status_code_ranges  = ["200-200"]
  }
}

resource "azurerm_traffic_manager_azure_endpoint" "region" {
  for_each           = local.data_regions
  name               = each.key
  profile_id         = azurerm_traffic_manager_profile.this.id
  target_resource_id = module.region[each.key].public_ip_id
  weight             = 100
}

data "azurerm_dns_zone" "public" {
  name                = var.public_dns_zone.name
  resource_group_name = var.public_dns_zone.resource_group_name
}

resource "azurerm_dns_cname_record" "service" {
  name                = var.service_name
  zone_name           = data.azurerm_dns_zone.public.name
  resource_group_name = data.azurerm_dns_zone.public.resource_group_name
  ttl                 = 300
  target_resource_id  = azurerm_traffic_manager_profile.this.id
  tags                = local.tags
}

# <region>.<service>: pins one region (clients that must stay put, tests).
resource "azurerm_dns_a_record" "region" {
  for_each            = local.data_regions
  name                = "${each.key}.${var.service_name}"
  zone_name           = data.azurerm_dns_zone.public.name
  resource_group_name = data.azurerm_dns_zone.public.resource_group_name
  ttl                 = var.dns_ttl_seconds
  target_resource_id  = module.region[each.key].public_ip_id
  tags                = local.tags
}

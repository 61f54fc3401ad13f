# Peers dial repl.<region>.<private zone>:7381, each region's internal load
# balancer on an address reserved in modules/region.
resource "google_dns_managed_zone" "private" {
  # checkov:skip=CKV_GCP_16: DNSSEC does not apply to private zones.
  name        = "${var.cluster_name}-private"
  dns_name    = "${var.private_zone_name}."
  description = "Meridian replication names for ${var.cluster_name}"
  visibility  = "private"

  private_visibility_config {
    networks {
      network_url = google_compute_network.this.id
    }
  }
}

resource "google_dns_record_set" "repl" {
  for_each     = module.region
  managed_zone = google_dns_managed_zone.private.name
  name         = "repl.${each.key}.${var.private_zone_name}."
  type         = "A"
  ttl          = 60
  rrdatas      = [each.value.repl_address]
}

data "google_dns_managed_zone" "public" {
  name = var.public_zone
}

locals {
  service_fqdn = "${var.service_name}.${data.google_dns_managed_zone.public.dns_name}"
}

# Probed from three Google regions; a region leaves the answer when
# /health/ready stops answering 200 (fenced, recovering, bootstrapping).
resource "google_compute_health_check" "ready" {
  name                = "${var.cluster_name}-ready"
  check_interval_sec  = 10
  timeout_sec         = 5
  healthy_threshold   = 2
  unhealthy_threshold = 2
  source_regions      = keys(var.regions)

  http_health_check {
    port         = 7380
    request_path = "/health/ready"
  }

  log_config {
    enable = true
  }
}

resource "google_dns_record_set" "global" {
  managed_zone = data.google_dns_managed_zone.public.name
  name         = local.service_fqdn
  type         = "A"
  ttl          = var.dns_ttl_seconds

  routing_policy {
    health_check = google_compute_health_check.ready.id

    dynamic "geo" {
      for_each = local.data_regions
      content {
        location = geo.key
        health_checked_targets {
          external_endpoints = [module.region[geo.key].public_address]
        }
      }
    }
  }
}

# <region>.<service>: pins one region (clients that must stay put, tests).
resource "google_dns_record_set" "region" {
  for_each     = local.data_regions
  managed_zone = data.google_dns_managed_zone.public.name
  name         = "${each.key}.${local.service_fqdn}"
  type         = "A"
  ttl          = var.dns_ttl_seconds
  rrdatas      = [module.region[each.key].public_address]
}

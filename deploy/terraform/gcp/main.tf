# Three GKE regions for one Meridian cluster on one global VPC: peers
# replicate over private addresses (internal load balancers with global
# access), Cloud DNS geo routing with health checks on /health/ready sends
# clients to the nearest data region that can take writes (dns.tf).

locals {
  labels = merge(var.labels, {
    "app-kubernetes-io-part-of" = "meridian"
    "meridian-cluster"          = var.cluster_name
  })
  data_regions = { for name, r in var.regions : name => r if !r.witness }
}

resource "google_compute_network" "this" {
  name                            = var.cluster_name
  auto_create_subnetworks         = false
  routing_mode                    = "GLOBAL"
  delete_default_routes_on_create = false
}

module "region" {
  source   = "./modules/region"
  for_each = var.regions

  cluster_name               = var.cluster_name
  region                     = each.key
  cidr                       = each.value.cidr
  witness                    = each.value.witness
  network_id                 = google_compute_network.this.id
  network_name               = google_compute_network.this.name
  release_channel            = var.release_channel
  machine_type               = each.value.witness ? var.witness_machine_type : var.data_machine_type
  master_authorized_networks = var.master_authorized_networks
  rbac_security_group        = var.rbac_security_group
  labels                     = local.labels
}

# Replication between regions: only the regions' own ranges (nodes and pods)
# reach port 7381, and only on Meridian nodes.
resource "google_compute_firewall" "replication" {
  name      = "${var.cluster_name}-replication"
  network   = google_compute_network.this.id
  direction = "INGRESS"
  priority  = 1000

  source_ranges = [for r in values(var.regions) : r.cidr]
  target_tags   = ["meridian-node"]

  allow {
    protocol = "tcp"
    ports    = ["7381"]
  }

  log_config {
    metadata = "INCLUDE_ALL_METADATA"
  }
}

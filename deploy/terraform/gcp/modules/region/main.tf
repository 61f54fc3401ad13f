data "google_project" "this" {}

locals {
  name          = "${var.cluster_name}-${var.region}"
  octet         = split(".", var.cidr)[1]
  nodes_range   = cidrsubnet(var.cidr, 4, 0)
  service_range = cidrsubnet(var.cidr, 4, 1)
  pods_range    = cidrsubnet(var.cidr, 2, 1)
}

resource "google_compute_subnetwork" "this" {
  name                     = local.name
  region                   = var.region
  network                  = var.network_id
  ip_cidr_range            = local.nodes_range
  private_ip_google_access = true

  secondary_ip_range {
    range_name    = "pods"
    ip_cidr_range = local.pods_range
  }

  secondary_ip_range {
    range_name    = "services"
    ip_cidr_range = local.service_range
  }

  log_config {
    aggregation_interval = "INTERVAL_5_SEC"
    flow_sampling        = 0.5
    metadata             = "INCLUDE_ALL_METADATA"
  }
}

# Private nodes reach the internet (image pulls) through Cloud NAT only.
resource "google_compute_router" "this" {
  name    = local.name
  region  = var.region
  network = var.network_id
}

resource "google_compute_router_nat" "this" {
  name                               = local.name
  router                             = google_compute_router.this.name
  region                             = var.region
  nat_ip_allocate_option             = "AUTO_ONLY"
  source_subnetwork_ip_ranges_to_nat = "ALL_SUBNETWORKS_ALL_IP_RANGES"

  log_config {
    enable = true
    filter = "ERRORS_ONLY"
  }
}

# meridian-repl's internal address (x.x.0.10), reachable from every region
# through the Service's global-access annotation.
resource "google_compute_address" "repl" {
  name         = "${local.name}-repl"
  region       = var.region
  address_type = "INTERNAL"
  subnetwork   = google_compute_subnetwork.this.id
  address      = cidrhost(local.nodes_range, 10)
}

# meridian-global's external address: the geo-routed DNS answer.
resource "google_compute_address" "public" {
  count        = var.witness ? 0 : 1
  name         = "${local.name}-public"
  region       = var.region
  address_type = "EXTERNAL"
  network_tier = "PREMIUM"
}

# Application-layer encryption of Kubernetes Secrets.
resource "google_kms_key_ring" "this" {
  name     = local.name
  location = var.region
}

resource "google_kms_crypto_key" "etcd" {
  name            = "gke-secrets"
  key_ring        = google_kms_key_ring.this.id
  rotation_period = "7776000s"

  lifecycle {
    prevent_destroy = true
  }
}

resource "google_kms_crypto_key_iam_member" "gke" {
  crypto_key_id = google_kms_crypto_key.etcd.id
  role          = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
  member        = "serviceAccount:service-${data.google_project.this.number}@container-engine-robot.iam.gserviceaccount.com"
}

resource "google_service_account" "node" {
  account_id   = substr("${var.cluster_name}-${var.region}-node", 0, 30)
  display_name = "GKE nodes of ${local.name}"
}

resource "google_project_iam_member" "node" {
  project = data.google_project.this.project_id
  role    = "roles/container.defaultNodeServiceAccount"
  member  = "serviceAccount:${google_service_account.node.email}"
}

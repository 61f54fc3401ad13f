resource "google_container_cluster" "this" {
  # checkov:skip=CKV_GCP_12: NetworkPolicy is enforced by GKE Dataplane V2 (datapath_provider ADVANCED_DATAPATH), which replaces the network_policy block.
  # checkov:skip=CKV_GCP_69: The default node pool is removed; the only node pool (below) sets workload_metadata_config GKE_METADATA.
  name                        = local.name
  location                    = var.region
  network                     = var.network_id
  subnetwork                  = google_compute_subnetwork.this.id
  networking_mode             = "VPC_NATIVE"
  datapath_provider           = "ADVANCED_DATAPATH"
  enable_intranode_visibility = true
  enable_shielded_nodes       = true
  remove_default_node_pool    = true
  initial_node_count          = 1
  deletion_protection         = true
  # The provider's default_labels add the root's labels on top of these.
  resource_labels = {
    "meridian-cluster" = var.cluster_name
    "meridian-region"  = var.region
  }

  ip_allocation_policy {
    cluster_secondary_range_name  = "pods"
    services_secondary_range_name = "services"
  }

  private_cluster_config {
    enable_private_nodes    = true
    enable_private_endpoint = true
    master_ipv4_cidr_block  = "172.16.${local.octet}.0/28"

    master_global_access_config {
      enabled = true
    }
  }

  master_authorized_networks_config {
    gcp_public_cidrs_access_enabled = false

    dynamic "cidr_blocks" {
      for_each = var.master_authorized_networks
      content {
        display_name = cidr_blocks.key
        cidr_block   = cidr_blocks.value
      }
    }
  }

  master_auth {
    client_certificate_config {
      issue_client_certificate = false
    }
  }

  release_channel {
    channel = var.release_channel
  }

  workload_identity_config {
    workload_pool = "${data.google_project.this.project_id}.svc.id.goog"
  }

  authenticator_groups_config {
    security_group = var.rbac_security_group
  }

  binary_authorization {
    evaluation_mode = "PROJECT_SINGLETON_POLICY_ENFORCE"
  }

  database_encryption {
    state    = "ENCRYPTED"
    key_name = google_kms_crypto_key.etcd.id
  }

  addons_config {
    gce_persistent_disk_csi_driver_config {
      enabled = true
    }
  }

  logging_config {
    enable_components = ["SYSTEM_COMPONENTS", "APISERVER", "WORKLOADS"]
  }

  monitoring_config {
    enable_components = ["SYSTEM_COMPONENTS"]

    managed_prometheus {
      enabled = true
    }
  }

  # Upgrades on weekend nights; the PodDisruptionBudget keeps a node drain
  # from taking a region down on its own (docs/deploy.md).
  maintenance_policy {
    recurring_window {
      start_time = "2025-01-04T02:00:00Z"
      end_time   = "2025-01-04T06:00:00Z"
      recurrence = "FREQ=WEEKLY;BYDAY=SA,SU"
    }
  }

  depends_on = [google_kms_crypto_key_iam_member.gke]
}

resource "google_container_node_pool" "this" {
  name       = var.witness ? "witness" : "data"
  cluster    = google_container_cluster.this.id
  location   = var.region
  node_count = var.nodes_per_zone

  management {
    auto_repair  = true
    auto_upgrade = true
  }

  upgrade_settings {
    max_surge       = 1
    max_unavailable = 0
  }

  node_config {
    machine_type    = var.machine_type
    image_type      = "COS_CONTAINERD"
    disk_type       = "pd-balanced"
    disk_size_gb    = 50
    service_account = google_service_account.node.email
    oauth_scopes    = ["https://www.googleapis.com/auth/cloud-platform"]
    tags            = ["meridian-node"]
    resource_labels = var.labels

    labels = {
      "meridian.io/role" = var.witness ? "witness" : "data"
    }

    metadata = {
      disable-legacy-endpoints = "true"
    }

    workload_metadata_config {
      mode = "GKE_METADATA"
    }

    shielded_instance_config {
      enable_secure_boot          = true
      enable_integrity_monitoring = true
    }
  }
}

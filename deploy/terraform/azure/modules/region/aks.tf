resource "azurerm_user_assigned_identity" "cluster" {
  name                = "id-aks-${local.name}"
  location            = var.location
  resource_group_name = azurerm_resource_group.this.name
  tags                = var.tags
}

# The control plane manages load balancers on the subnets and the public IP
# in this resource group.
resource "azurerm_role_assignment" "cluster_network" {
  scope                = azurerm_resource_group.this.id
  role_definition_name = "Network Contributor"
  principal_id         = azurerm_user_assigned_identity.cluster.principal_id
}

resource "azurerm_log_analytics_workspace" "this" {
  name                = "log-${local.name}"
  location            = var.location
  resource_group_name = azurerm_resource_group.this.name
  sku                 = "PerGB2018"
  retention_in_days   = var.log_retention_days
  tags                = var.tags
}

resource "azurerm_kubernetes_cluster" "this" {
  # checkov:skip=CKV_AZURE_117: Node OS disks are ephemeral (nothing persists on them) and host encryption is on; Meridian's data disks are encrypted at rest by the CSI driver's managed disks.
  name                              = "aks-${local.name}"
  location                          = var.location
  resource_group_name               = azurerm_resource_group.this.name
  dns_prefix                        = local.name
  kubernetes_version                = var.kubernetes_version
  sku_tier                          = "Standard"
  automatic_upgrade_channel         = "patch"
  node_os_upgrade_channel           = "NodeImage"
  local_account_disabled            = true
  role_based_access_control_enabled = true
  oidc_issuer_enabled               = true
  workload_identity_enabled         = true
  azure_policy_enabled              = true
  private_cluster_enabled           = true
  private_dns_zone_id               = "System"
  node_resource_group               = "rg-${local.name}-nodes"
  tags                              = var.tags

  identity {
    type         = "UserAssigned"
    identity_ids = [azurerm_user_assigned_identity.cluster.id]
  }

  azure_active_directory_role_based_access_control {
    tenant_id              = var.tenant_id
    admin_group_object_ids = var.admin_group_object_ids
    azure_rbac_enabled     = true
  }

  network_profile {
    network_plugin      = "azure"
    network_plugin_mode = "overlay"
    network_data_plane  = "cilium"
    network_policy      = "cilium"
    pod_cidr            = "192.168.0.0/16"
    service_cidr        = "10.0.0.0/16"
    dns_service_ip      = "10.0.0.10"
    load_balancer_sku   = "standard"
    outbound_type       = "userAssignedNATGateway"
  }

  default_node_pool {
    name                         = "system"
    vm_size                      = var.system_vm_size
    node_count                   = 3
    zones                        = ["1", "2", "3"]
    vnet_subnet_id               = azurerm_subnet.nodes.id
    only_critical_addons_enabled = true
    host_encryption_enabled      = true
    os_disk_type                 = "Ephemeral"
    os_disk_size_gb              = 64
    max_pods                     = 110
    temporary_name_for_rotation  = "systemtmp"

    upgrade_settings {
      max_surge = "33%"
    }
  }

  oms_agent {
    log_analytics_workspace_id      = azurerm_log_analytics_workspace.this.id
    msi_auth_for_monitoring_enabled = true
  }

  microsoft_defender {
    log_analytics_workspace_id = azurerm_log_analytics_workspace.this.id
  }

  key_vault_secrets_provider {
    secret_rotation_enabled = true
  }

  maintenance_window_auto_upgrade {
    frequency   = "Weekly"
    interval    = 1
    duration    = 4
    day_of_week = "Saturday"
    start_time  = "02:00"
    utc_offset  = "+00:00"
  }

  depends_on = [
    azurerm_role_assignment.cluster_network,
    azurerm_subnet_nat_gateway_association.nodes,
  ]
}

# Meridian runs here, one node per zone.
resource "azurerm_kubernetes_cluster_node_pool" "meridian" {
  name                    = var.witness ? "witness" : "data"
  kubernetes_cluster_id   = azurerm_kubernetes_cluster.this.id
  mode                    = "User"
  vm_size                 = var.vm_size
  node_count              = 3
  zones                   = ["1", "2", "3"]
  vnet_subnet_id          = azurerm_subnet.nodes.id
  host_encryption_enabled = true
  os_disk_type            = "Ephemeral"
  os_disk_size_gb         = var.witness ? 64 : 128
  max_pods                = 110
  tags                    = var.tags

  node_labels = {
    "meridian.io/role" = var.witness ? "witness" : "data"
  }

  upgrade_settings {
    max_surge = "1"
  }
}

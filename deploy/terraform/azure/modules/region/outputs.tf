output "cluster_name" {
  description = "AKS cluster name."
  value       = azurerm_kubernetes_cluster.this.name
}

output "resource_group_name" {
  description = "Resource group of the region (cluster, VNet, public IP)."
  value       = azurerm_resource_group.this.name
}

output "oidc_issuer_url" {
  description = "OIDC issuer for workload identity."
  value       = azurerm_kubernetes_cluster.this.oidc_issuer_url
}

output "vnet_id" {
  description = "VNet id, for peering and private DNS links."
  value       = azurerm_virtual_network.this.id
}

output "vnet_name" {
  description = "VNet name, for peering."
  value       = azurerm_virtual_network.this.name
}

output "repl_private_ip" {
  description = "Fixed address of meridian-repl's internal load balancer."
  value       = cidrhost(local.ilb_range, 10)
}

output "public_ip_id" {
  description = "Public IP of meridian-global (null for the witness)."
  value       = var.witness ? null : azurerm_public_ip.public[0].id
}

output "public_ip_name" {
  description = "Name of meridian-global's public IP (null for the witness)."
  value       = var.witness ? null : azurerm_public_ip.public[0].name
}

output "public_ip_address" {
  description = "Address of meridian-global's public IP (null for the witness)."
  value       = var.witness ? null : azurerm_public_ip.public[0].ip_address
}

output "clusters" {
  description = "AKS cluster per region (az aks get-credentials -g RG -n NAME, then kubelogin)."
  value       = { for k, m in module.region : k => { name = m.cluster_name, resource_group = m.resource_group_name } }
}

output "oidc_issuer_urls" {
  description = "OIDC issuer per cluster, for workload identity federated credentials (External Secrets reading Key Vault)."
  value       = { for k, m in module.region : k => m.oidc_issuer_url }
}

output "repl_private_ips" {
  description = "Per region, the internal load balancer address of meridian-repl (azure-load-balancer-ipv4 in the overlays)."
  value       = { for k, m in module.region : k => m.repl_private_ip }
}

output "public_ips" {
  description = "Per data region, the public IP name and address of meridian-global (azure-pip-name in the overlays)."
  value       = { for k in keys(local.data_regions) : k => { name = module.region[k].public_ip_name, address = module.region[k].public_ip_address, resource_group = module.region[k].resource_group_name } }
}

output "client_endpoint" {
  description = "Name clients connect to (TLS RESP on port 7389); routed by Traffic Manager to a healthy data region."
  value       = trimsuffix(azurerm_dns_cname_record.service.fqdn, ".")
}

output "health_checker_cidrs" {
  description = "Traffic Manager probe ranges (AzureTrafficManager service tag) for the meridian-health-probers NetworkPolicy and loadBalancerSourceRanges."
  value       = data.azurerm_network_service_tags.traffic_manager.ipv4_cidrs
}

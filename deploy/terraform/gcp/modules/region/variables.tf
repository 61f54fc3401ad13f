variable "cluster_name" {
  description = "Meridian cluster name; resources are named <cluster_name>-<region>."
  type        = string
}

variable "region" {
  description = "GCP region; also the Meridian region id."
  type        = string
}

variable "cidr" {
  description = "The region's /16: nodes x.x.0.0/20, services x.x.16.0/20, pods x.x.64.0/18."
  type        = string

  validation {
    condition     = can(cidrnetmask(var.cidr)) && endswith(var.cidr, "/16")
    error_message = "cidr must be a /16."
  }
}

variable "witness" {
  description = "True for the witness region: smaller nodes, no public address."
  type        = bool
}

variable "network_id" {
  description = "Id of the shared global VPC."
  type        = string
}

variable "network_name" {
  description = "Name of the shared global VPC."
  type        = string
}

variable "release_channel" {
  description = "GKE release channel."
  type        = string
}

variable "machine_type" {
  description = "Machine type of the node pool."
  type        = string
}

variable "nodes_per_zone" {
  description = "Nodes in each of the region's zones."
  type        = number
  default     = 1

  validation {
    condition     = var.nodes_per_zone >= 1
    error_message = "At least one node per zone."
  }
}

variable "master_authorized_networks" {
  description = "Networks allowed to reach the control plane's private endpoint."
  type        = map(string)
}

variable "rbac_security_group" {
  description = "Google Group for GKE RBAC."
  type        = string
}

variable "labels" {
  description = "Labels for the region's resources."
  type        = map(string)
}

locals {
  name        = "${var.cluster_name}-${var.location}"
  nodes_range = cidrsubnet(var.cidr, 4, 0)
  ilb_range   = cidrsubnet(var.cidr, 8, 32)
}

resource "azurerm_resource_group" "this" {
  name     = "rg-${local.name}"
  location = var.location
  tags     = var.tags
}

resource "azurerm_virtual_network" "this" {
  name                = "vnet-${local.name}"
  location            = var.location
  resource_group_name = azurerm_resource_group.this.name
  address_space       = [var.cidr]
  tags                = var.tags
}

resource "azurerm_subnet" "nodes" {
  name                            = "snet-nodes"
  resource_group_name             = azurerm_resource_group.this.name
  virtual_network_name            = azurerm_virtual_network.this.name
  address_prefixes                = [local.nodes_range]
  default_outbound_access_enabled = false
}

# Internal load balancers only; the overlays pin meridian-repl to x.x.32.10.
resource "azurerm_subnet" "ilb" {
  name                            = "snet-ilb"
  resource_group_name             = azurerm_resource_group.this.name
  virtual_network_name            = azurerm_virtual_network.this.name
  address_prefixes                = [local.ilb_range]
  default_outbound_access_enabled = false
}

# Subnet-level rules on top of the ones AKS manages: the public endpoint is
# open to client networks on the TLS port and to Traffic Manager's probes on
# the HTTP port only; other regions reach the replication port.
resource "azurerm_network_security_group" "this" {
  name                = "nsg-${local.name}"
  location            = var.location
  resource_group_name = azurerm_resource_group.this.name
  tags                = var.tags

  security_rule {
    name                       = "meridian-clients-tls"
    priority                   = 200
    direction                  = "Inbound"
    access                     = "Allow"
    protocol                   = "Tcp"
    source_port_range          = "*"
    destination_port_range     = "7389"
    source_address_prefixes    = var.client_cidrs
    destination_address_prefix = "*"
  }

  security_rule {
    name                       = "meridian-health-probes"
    priority                   = 210
    direction                  = "Inbound"
    access                     = "Allow"
    protocol                   = "Tcp"
    source_port_range          = "*"
    destination_port_range     = "7380"
    source_address_prefix      = "AzureTrafficManager"
    destination_address_prefix = "*"
  }

  security_rule {
    name                       = "meridian-replication"
    priority                   = 220
    direction                  = "Inbound"
    access                     = "Allow"
    protocol                   = "Tcp"
    source_port_range          = "*"
    destination_port_range     = "7381"
    source_address_prefixes    = var.peer_cidrs
    destination_address_prefix = "VirtualNetwork"
  }
}

resource "azurerm_subnet_network_security_group_association" "nodes" {
  subnet_id                 = azurerm_subnet.nodes.id
  network_security_group_id = azurerm_network_security_group.this.id
}

resource "azurerm_subnet_network_security_group_association" "ilb" {
  subnet_id                 = azurerm_subnet.ilb.id
  network_security_group_id = azurerm_network_security_group.this.id
}

# Pods egress through a NAT gateway, not through the load balancer's
# outbound rules (no SNAT port exhaustion, stable egress address).
resource "azurerm_public_ip" "nat" {
  name                = "pip-nat-${local.name}"
  location            = var.location
  resource_group_name = azurerm_resource_group.this.name
  allocation_method   = "Static"
  sku                 = "Standard"
  zones               = ["1", "2", "3"]
  tags                = var.tags
}

resource "azurerm_nat_gateway" "this" {
  name                = "ng-${local.name}"
  location            = var.location
  resource_group_name = azurerm_resource_group.this.name
  sku_name            = "Standard"
  tags                = var.tags
}

resource "azurerm_nat_gateway_public_ip_association" "this" {
  nat_gateway_id       = azurerm_nat_gateway.this.id
  public_ip_address_id = azurerm_public_ip.nat.id
}

resource "azurerm_subnet_nat_gateway_association" "nodes" {
  subnet_id      = azurerm_subnet.nodes.id
  nat_gateway_id = azurerm_nat_gateway.this.id
}

# meridian-global's address (azure-pip-name in the overlay), zone-redundant,
# with a DNS label so Traffic Manager can use it as an Azure endpoint.
resource "azurerm_public_ip" "public" {
  count               = var.witness ? 0 : 1
  name                = "pip-meridian-${var.location}"
  location            = var.location
  resource_group_name = azurerm_resource_group.this.name
  allocation_method   = "Static"
  sku                 = "Standard"
  zones               = ["1", "2", "3"]
  domain_name_label   = local.name
  tags                = var.tags
}
